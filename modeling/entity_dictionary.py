"""A typed dictionary of entity strings that a deployed model is taught without retraining.

Users have lists of names with their types more often than labelled sentences. A model keeps such a list in
its config (``added_entities``: ``[string, type]`` pairs, saved in ``config.json``), and reads it two ways:

* **through memory** (the memory network): each entry becomes a memory sentence at the end of the bank
  (:data:`ENTITY_MEMORY_FORMS`), which ``entity`` retrieval finds wherever a query contains the string and the
  memory attention reads in context, as it reads any labelled training sentence. With
  ``config.taught_entities_only`` (the default), a text whose memories include such a memory is read twice, with
  and without them, and :func:`keep_taught_entities` takes from the first reading only what it finds of the
  taught entities themselves. Where its BiLSTM reads a lexicon (softword, word sets), each taught string is also a
  word of that lexicon, read in the word sets with the mean vector of its type's lexicon words
  (``MemoryNetForTokenClassification._teach_lexicon``);
* **forced** (any model, the pipeline's ``force_entities=True``): every longest match of a dictionary string is
  an entity of its type, whatever the model says there (:func:`force_matches`), which is what the user
  dictionaries of other toolkits do.

A dictionary file has one ``string<TAB>type`` entry a line (blank lines and lines starting with ``#`` are
skipped); :func:`read_entity_file` reports a bad line with its file and line number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .tag_schemes import spans_to_tags, tags_to_spans

# how an entry is written into the memory bank: "template": a bank sentence holding one entity of the entry's
# type, with the entry's string in its place (the context the model was trained to read); "alone": the string
# by itself, tagged as one entity
ENTITY_MEMORY_FORMS = ("template", "alone")


@dataclass
class EntityDictionaryConfig:
    r"""
    The field of both models' configs that holds the entities taught by name (:mod:`.entity_dictionary`).

    Args:
        added_entities (`list[list[str]]`, defaults to `[]`):
            `[string, type]` pairs in the order they were added (a list: `config.json` sorts a mapping's keys,
            and the memory network keeps the entries' memories in this order); changed by the model's
            `add_entities` and `remove_entities`.

        taught_entities_only (`bool`, defaults to `True`):
            Memory network: where a text retrieves memories of taught entities, the model reads it with them and
            without them, and keeps its reading without them but for the taught entities (string and type) that
            the reading with them finds (:func:`entity_dictionary.keep_taught_entities`). `False`: the reading with
            them, whole.

        taught_entities_in_lexicon (`bool`, defaults to `True`):
            Memory network whose BiLSTM reads a lexicon (softword, word sets): the taught strings are words of that
            lexicon too. `False`: the lexicon is the one the model was trained with.
    """

    added_entities: list = field(default_factory=list)
    taught_entities_only: bool = True
    taught_entities_in_lexicon: bool = True


class EntityFileError(ValueError):
    """A bad dictionary entry; the message names the file and line when it came from a file."""


def entity_types_of(id2label: Mapping) -> list[str]:
    """The entity types of a model's labels, sorted."""
    return sorted({label.split("-", 1)[1] for label in id2label.values() if label != "O"})


def check_entries(
    entries: Iterable[tuple[str, str]], types: Iterable[str], where: Iterable[str] | None = None
) -> dict[str, str]:
    """``(string, type)`` pairs -> string -> type, after checking each: a non-empty string with no blank at either
    end, one of the model's ``types``, and no string given twice with different types. ``where`` names each
    entry in error messages (``file:line``)."""
    types = list(types)
    out: dict[str, str] = {}
    seen_at: dict[str, str] = {}
    where = iter(where) if where is not None else None
    for k, entry in enumerate(entries):
        at = next(where) if where is not None else f"entry {k + 1}"
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
            raise EntityFileError(f"{at}: an entry is a (string, type) pair, got {entry!r}")
        string, etype = entry
        if not isinstance(string, str) or not string.strip():
            raise EntityFileError(f"{at}: the entity string is empty")
        if string != string.strip():
            raise EntityFileError(f"{at}: the entity string {string!r} begins or ends with a blank")
        if etype not in types:
            raise EntityFileError(f"{at}: unknown entity type {etype!r}; the model's types are {', '.join(types)}")
        if string in out and out[string] != etype:
            raise EntityFileError(
                f"{at}: {string!r} is given as {etype} here and as {out[string]} at {seen_at[string]}"
            )
        out.setdefault(string, etype)
        seen_at.setdefault(string, at)
    return out


def read_entity_file(path: str | os.PathLike, types: Iterable[str]) -> dict[str, str]:
    """The entries of a dictionary file (``string<TAB>type`` lines), checked as :func:`check_entries` does."""
    entries, where = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise EntityFileError(
                    f"{path}:{number}: expected 'string<TAB>type', got {len(parts)} tab-separated fields: {line!r}"
                )
            entries.append((parts[0], parts[1].strip()))
            where.append(f"{path}:{number}")
    return check_entries(entries, types, where)


def as_entries(entries, types: Iterable[str]) -> dict[str, str]:
    """What ``add_entities`` takes (a mapping, ``(string, type)`` pairs, or a dictionary file's path) -> string ->
    type, checked."""
    if isinstance(entries, (str, os.PathLike)):
        return read_entity_file(entries, types)
    if isinstance(entries, Mapping):
        entries = entries.items()
    return check_entries(list(entries), types)


class DictionaryMatcher:
    """An Aho-Corasick automaton (``pyahocorasick``) of a dictionary's strings, rebuilt when the dictionary
    changes."""

    def __init__(self):
        self.snapshot: dict[str, str] | None = None
        self.automaton = None

    def matches(self, text: str, dictionary: Mapping[str, str]) -> list[tuple[int, int, str]]:
        """``(start, end, type)`` of every dictionary string in ``text``, overlapping ones included."""
        if not dictionary:
            return []
        if self.snapshot != dictionary:
            import ahocorasick

            self.snapshot = dict(dictionary)
            self.automaton = ahocorasick.Automaton()
            for string, etype in self.snapshot.items():
                self.automaton.add_word(string, (len(string), etype))
            self.automaton.make_automaton()
        return [(end + 1 - length, end + 1, etype) for end, (length, etype) in self.automaton.iter(text)]


def longest_matches(matches: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Matches of which no two overlap: the longest first, then the earlier; in text order."""
    taken: list[tuple[int, int, str]] = []
    occupied: set[int] = set()
    for start, end, etype in sorted(matches, key=lambda m: (m[0] - m[1], m[0])):
        if occupied.isdisjoint(range(start, end)):
            taken.append((start, end, etype))
            occupied.update(range(start, end))
    return sorted(taken)


def force_matches(text: str, entities: list[dict], matches: Iterable[tuple[int, int, str]]) -> list[dict]:
    """``entities`` (the pipeline's dicts) with the longest dictionary matches in ``text`` forced: a match is an
    entity of its type (score 1.0), and the model's entities that overlap one are dropped."""
    forced = [
        {"entity_group": etype, "score": 1.0, "word": text[a:b], "start": a, "end": b}
        for a, b, etype in longest_matches(matches)
    ]
    kept = [e for e in entities if all(e["end"] <= f["start"] or e["start"] >= f["end"] for f in forced)]
    return sorted(kept + forced, key=lambda e: e["start"])


def taught_as_read(memory_texts: list[str], memory_tags: list[list[str]], added: Mapping[str, str], scheme: str):
    """The taught entities as the model reads them (string -> type): its texts are rebuilt from token ids (letters in
    lower case, characters out of the vocabulary unknown), so each entry's string is taken from its own memory (the
    taught entities' memories, in their order, as texts and tag strings), where it is the span of the entry's type.
    ``memory_texts`` may be token-id tuples instead: the entries are then id tuples, and an entry whose memory holds
    no span of its type is left out."""
    out = {}
    for text, tags, (string, etype) in zip(memory_texts, memory_tags, added.items()):
        span = next((x for x in tags_to_spans(tags, scheme, strict=False) if x.type == etype), None)
        if span is not None:
            out[text[span.start : span.end]] = etype
        elif isinstance(text, str):
            out[string] = etype
    return out


def keep_taught_entities(
    text: str, own: list[str], read: list[str], scheme: str, taught: Mapping[str, str]
) -> tuple[list[str], list[bool]] | None:
    """A window's tags from its two readings: ``own`` (without the taught entities' memories) and ``read`` (with
    them), tag strings of ``text``'s characters. The entities of ``read`` that are taught, string and type, are kept
    and replace the entities of ``own`` that overlap them; anything else ``read`` changed is left out: a taught
    entity's memory is evidence for that entity, and the rest of its context is a template's, not the text's.
    Returns the tags and which characters they took from ``read``, or None where ``read`` adds no taught entity."""
    chosen = [x for x in tags_to_spans(read, scheme, strict=False) if taught.get(text[x.start : x.end]) == x.type]
    if not chosen:
        return None
    tags, from_read = list(own), [False] * len(own)
    for y in tags_to_spans(own, scheme, strict=False):
        if any(y.start < x.end and x.start < y.end for x in chosen):
            tags[y.start : y.end] = ["O"] * (y.end - y.start)
    for x in chosen:
        tags[x.start : x.end] = spans_to_tags([(x.type, 0, x.end - x.start)], x.end - x.start, scheme)
        from_read[x.start : x.end] = [True] * (x.end - x.start)
    return tags, from_read


def keep_taught_tag_ids(
    text: str, own: Iterable[int], read: Iterable[int], id2label: Mapping, scheme: str, taught: Mapping[str, str]
) -> tuple[list[int], list[bool]] | None:
    """:func:`keep_taught_entities` on tag ids (``id2label``): the merged tag ids and which characters took theirs
    from ``read``, or None."""
    merged = keep_taught_entities(text, [id2label[int(t)] for t in own], [id2label[int(t)] for t in read], scheme,
                                  taught)  # fmt: skip
    if merged is None:
        return None
    label2id = {label: int(i) for i, label in id2label.items()}
    return [label2id[t] for t in merged[0]], merged[1]


class EntityDictionaryMixin:
    """``add_entities`` / ``remove_entities`` / ``added_entities`` of every tagger. The dictionary lives in
    ``config.added_entities``; a model that reads it in context (the memory network) also writes each entry into
    its memory bank (:meth:`write_entity_memories`, :meth:`drop_entity_memories`)."""

    def add_entities(self, entries, tokenizer=None, memory_form: str = ENTITY_MEMORY_FORMS[0]) -> dict[str, str]:
        """Teach the model entities by name, with no retraining: ``entries`` is a mapping string -> type,
        ``(string, type)`` pairs, or a dictionary file (``string<TAB>type`` lines). The types must be the model's
        own. Returns the entries that were new (an entry already there with the same type is kept as it is; with
        another type it is an error: remove it first). ``save_pretrained`` saves them with the model."""
        if memory_form not in ENTITY_MEMORY_FORMS:
            raise ValueError(f"memory_form must be one of {ENTITY_MEMORY_FORMS}, got {memory_form!r}")
        new = as_entries(entries, self.entity_types)
        current = self.added_entities
        clashes = [f"{s!r} ({current[s]}, given as {t})" for s, t in new.items() if s in current and current[s] != t]
        if clashes:
            raise EntityFileError(
                f"already added with another type: {', '.join(clashes[:5])}; remove_entities them first"
            )
        added = {s: t for s, t in new.items() if s not in current}
        if added:
            self.write_entity_memories(added, tokenizer, memory_form)
            self.config.added_entities = [[s, t] for s, t in {**current, **added}.items()]
        return added

    def remove_entities(self, strings: Iterable[str]) -> None:
        """Forget entities taught by :meth:`add_entities` (by their strings); the model tags as before they were
        added."""
        strings = [strings] if isinstance(strings, str) else list(strings)
        current = self.added_entities
        unknown = [s for s in strings if s not in current]
        if unknown:
            raise KeyError(f"not among the added entities: {unknown[:5]}")
        drop = set(strings)
        self.drop_entity_memories([k for k, s in enumerate(current) if s in drop])
        self.config.added_entities = [[s, t] for s, t in current.items() if s not in drop]

    @property
    def entity_types(self) -> list[str]:
        """The model's entity types (of its labels), sorted."""
        return entity_types_of(self.config.id2label)

    @property
    def added_entities(self) -> dict[str, str]:
        """The entities taught by name: string -> type, in the order they were added."""
        return {s: t for s, t in self.config.added_entities}

    def write_entity_memories(self, added: dict[str, str], tokenizer, memory_form: str) -> None:
        """Where a model reads the dictionary in context, write these new entries there; a model without a
        memory bank reads it only through forced matching (the pipeline's ``force_entities=True``)."""

    def drop_entity_memories(self, positions: list[int]) -> None:
        """Remove what :meth:`write_entity_memories` wrote for the entries at these positions of the dictionary."""
