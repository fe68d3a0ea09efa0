"""Corpus readers: CLUENER JSON lines, column files, and the People's Daily 1998 raw corpus.

Every reader returns a :class:`Corpus`: its splits are ``datasets.Dataset`` objects with columns
``id``, ``tokens`` (a list of characters) and ``ner_tags`` (``Sequence(ClassLabel)`` in the
requested tag scheme; absent in an unlabelled split), and its ``notes`` say what reading did to
the data (lines skipped and why, long lines split, ...); :func:`print_summary` prints them with
the sentence and entity counts. Malformed input raises :class:`DataFormatError` naming file and line.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence as SequenceFeature, Value

from modeling.text_splitting import split_windows

from .errors import UserError

from modeling.tag_schemes import (
    check_scheme,
    Span,
    TagSequenceError,
    detect_scheme,
    label_list,
    lenient_spans,
    spans_to_tags,
    split_tag,
    tags_to_spans,
)


class DataFormatError(UserError, ValueError):
    """Malformed corpus input; the message starts with ``file:line:``."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line = str(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------------------------------
# the corpus object


@dataclass
class ReadReport:
    """Sentences a reader repaired or skipped (``--bad_tags``), as ``file:line``, per split."""

    repaired: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "repaired_sentences": sum(map(len, self.repaired.values())),
            "skipped_sentences": sum(map(len, self.skipped.values())),
            "repaired": {k: v for k, v in self.repaired.items() if v},
            "skipped": {k: v for k, v in self.skipped.items() if v},
        }


@dataclass
class Corpus(Mapping):
    """A corpus as read: ``corpus["train"]`` is a split (a ``datasets.Dataset``), ``tag_scheme`` the
    scheme of its ``ner_tags``, ``notes`` what reading did to the data, ``report`` the sentences
    ``--bad_tags`` repaired or skipped."""

    splits: DatasetDict
    tag_scheme: str
    notes: list[str] = field(default_factory=list)
    report: ReadReport = field(default_factory=ReadReport)

    def __getitem__(self, split: str) -> Dataset:
        return self.splits[split]

    def __iter__(self):
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    @property
    def label_names(self) -> list[str]:
        """The tag of each ``ner_tags`` id (the same in every labelled split)."""
        return self.splits["train"].features["ner_tags"].feature.names

    def with_splits(self, splits: dict[str, Dataset], note: str | None = None) -> "Corpus":
        """The same corpus with other splits (renamed, re-cut or truncated), and a note saying how."""
        return replace(self, splits=DatasetDict(splits), notes=self.notes + ([note] if note else []))

    def truncated(self, max_train: int | None = None, max_eval: int | None = None) -> "Corpus":
        """The first ``max_train`` training and ``max_eval`` validation / test sentences (debugging, tests)."""
        limits = {"train": max_train, "validation": max_eval, "test": max_eval}
        splits = {
            k: ds.select(range(min(limits[k], len(ds)))) if limits.get(k) else ds for k, ds in self.splits.items()
        }
        if all(len(ds) == len(self.splits[k]) for k, ds in splits.items()):
            return self
        return self.with_splits(splits, "truncated to " + ", ".join(f"{k} {len(ds)}" for k, ds in splits.items()))


# ---------------------------------------------------------------------------------------------
# building the corpus


def _features(types: Iterable[str], scheme: str, labelled: bool = True) -> Features:
    cols = {"id": Value("string"), "tokens": SequenceFeature(Value("string"))}
    if labelled:
        cols["ner_tags"] = SequenceFeature(ClassLabel(names=label_list(types, scheme)))
    return Features(cols)


def build_corpus(
    splits: dict[str, list[dict]],
    scheme: str,
    notes: list[str] | None = None,
    types: Iterable[str] | None = None,
    report: ReadReport | None = None,
) -> Corpus:
    """``splits`` maps a split name to examples ``{"id", "tokens", "spans"}`` (``spans=None``: unlabelled).

    Tags are written in ``scheme``; the label set is the same for every split (the union of the
    entity types seen, or ``types``).
    """
    scheme = check_scheme(scheme)
    if types is None:
        types = {s.type for exs in splits.values() for ex in exs if ex["spans"] for s in ex["spans"]}
    types = sorted(types)
    out = DatasetDict()
    for name, examples in splits.items():
        labelled = all(ex["spans"] is not None for ex in examples)
        feats = _features(types, scheme, labelled)
        cols: dict[str, list] = {
            "id": [ex["id"] for ex in examples],
            "tokens": [list(ex["tokens"]) for ex in examples],
        }
        if labelled:
            cols["ner_tags"] = [spans_to_tags(ex["spans"], len(ex["tokens"]), scheme) for ex in examples]
        out[name] = Dataset.from_dict(cols, features=feats)
    return Corpus(out, scheme, list(notes or []), report or ReadReport())


def dataset_spans(dataset: Dataset, scheme: str | None = None) -> list[list[Span]]:
    """The gold spans of every example of a labelled split."""
    names = dataset.features["ner_tags"].feature.names
    scheme = scheme or detect_scheme(names)
    return [tags_to_spans([names[t] for t in tags], scheme) for tags in dataset["ner_tags"]]


def print_summary(dsd: Corpus, title: str = "corpus", file=None) -> str:
    """Print (and return) sentences and entities per type for each split, plus the read notes."""
    lines = [f"== {title} ({dsd.tag_scheme} tags)"]
    types: list[str] = []
    counts: dict[str, Counter] = {}
    for name, ds in dsd.items():
        if "ner_tags" in ds.column_names:
            c = Counter(s.type for spans in dataset_spans(ds, dsd.tag_scheme) for s in spans)
            counts[name] = c
            types = sorted(set(types) | set(c))
    header = f"{'split':<8}{'sentences':>10}{'chars':>10}{'entities':>10}" + "".join(f"{t[:12]:>13}" for t in types)
    lines.append(header)
    for name, ds in dsd.items():
        n_chars = sum(len(t) for t in ds["tokens"])
        if name in counts:
            c = counts[name]
            row = f"{name:<8}{len(ds):>10}{n_chars:>10}{sum(c.values()):>10}" + "".join(f"{c[t]:>13}" for t in types)
        else:
            row = f"{name:<8}{len(ds):>10}{n_chars:>10}  (unlabelled)"
        lines.append(row)
    for note in dsd.notes:
        lines.append(f"  note: {note}")
    text = "\n".join(lines)
    print(text, file=file)
    return text


def split_long_examples(examples: list[dict], max_chars: int, what: str = "sentences") -> tuple[list[dict], list[str]]:
    """Cut examples longer than ``max_chars`` at sentence punctuation, never inside an entity.

    Returns the new examples (ids get a ``#k`` suffix) and notes saying how many were split.
    """
    out, n_split, n_forced = [], 0, 0
    for ex in examples:
        spans = ex["spans"] or []
        windows, forced = split_windows(ex["tokens"], max_chars, [(s.start, s.end) for s in spans])
        if len(windows) == 1:
            out.append(ex)
            continue
        n_split += 1
        n_forced += forced
        for k, (a, b) in enumerate(windows):
            piece = [Span(s.type, max(s.start, a) - a, min(s.end, b) - a) for s in spans if s.start < b and s.end > a]
            out.append(
                {
                    "id": f"{ex['id']}#{k}",
                    "tokens": ex["tokens"][a:b],
                    "spans": piece if ex["spans"] is not None else None,
                }
            )
    notes = []
    if n_split:
        notes.append(
            f"{n_split} {what} longer than {max_chars} characters were split at sentence punctuation "
            f"into {n_split + len(out) - len(examples)} pieces"
            + (f"; {n_forced} entities longer than the window had to be cut" if n_forced else "; no entity was cut")
        )
    return out, notes


# ---------------------------------------------------------------------------------------------
# CLUENER JSON lines


def _read_cluener_file(path: Path) -> tuple[list[dict], list[str]]:
    examples, nested = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise DataFormatError(path, lineno, 'expected an object with a string "text"')
            text = obj["text"]
            ex_id = str(obj.get("id", lineno - 1))
            if "label" not in obj:
                examples.append({"id": ex_id, "tokens": list(text), "spans": None})
                continue
            label = obj["label"] or {}
            if not isinstance(label, dict):
                raise DataFormatError(path, lineno, '"label" must be an object {type: {surface: [[start, end], ...]}}')
            spans = []
            for etype, surfaces in label.items():
                if not isinstance(surfaces, dict):
                    raise DataFormatError(path, lineno, f'label "{etype}" must map surface strings to span lists')
                for surface, positions in surfaces.items():
                    if not isinstance(positions, list):
                        raise DataFormatError(path, lineno, f'spans of "{surface}" must be a list of [start, end]')
                    for pos in positions:
                        if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(p, int) for p in pos)):
                            raise DataFormatError(
                                path, lineno, f'span {pos!r} of "{surface}" is not [start, end_inclusive]'
                            )
                        start, end = pos
                        if not 0 <= start <= end < len(text):
                            raise DataFormatError(
                                path,
                                lineno,
                                f'span [{start}, {end}] of {etype} "{surface}" lies outside the text ({len(text)} '
                                "characters)",
                            )
                        if text[start : end + 1] != surface:
                            raise DataFormatError(
                                path,
                                lineno,
                                f'span [{start}, {end}] of {etype} reads "{text[start : end + 1]}", not "{surface}"',
                            )
                        spans.append(Span(etype, start, end + 1))
            # flat tagging: an entity nested inside a longer one is dropped (and reported);
            # two entities that cross each other are an error
            spans.sort(key=lambda s: (s.start, -s.end))
            kept: list[Span] = []
            for sp in spans:
                if kept and sp.start < kept[-1].end:
                    outer = kept[-1]
                    if sp.end > outer.end:
                        raise DataFormatError(
                            path,
                            lineno,
                            f"entities {outer.type} [{outer.start}, {outer.end - 1}] and {sp.type} [{sp.start}, "
                            f"{sp.end - 1}] overlap",
                        )
                    nested.append(f"{path.name}:{lineno} {sp.type} '{text[sp.start : sp.end]}' inside {outer.type}")
                    continue
                kept.append(sp)
            examples.append({"id": ex_id, "tokens": list(text), "spans": kept})
    return examples, nested


def read_cluener_files(files: dict[str, str | Path], scheme: str = "BIOS", max_chars: int | None = None) -> Corpus:
    """Read CLUENER-format JSON-lines files, one per split; spans are ``[start, end_inclusive]``.

    A file whose lines carry no ``"label"`` (the official test set) gives a split with no
    ``ner_tags`` column. ``max_chars`` splits longer texts at punctuation without cutting an entity
    (CLUENER texts are at most 50 characters).
    """
    raw, notes = {}, []
    for split, path in files.items():
        exs, nested = _read_cluener_file(Path(path))
        if nested:
            notes.append(
                f"{split}: {len(nested)} nested entities dropped (flat tagging keeps the outer one): "
                + "; ".join(nested[:5])
            )
        if max_chars:
            exs, n = split_long_examples(exs, max_chars)
            notes += [f"{split}: {x}" for x in n]
        empty = sum(1 for ex in exs if not ex["tokens"])
        if empty:
            notes.append(f"{split}: skipped {empty} empty texts")
            exs = [ex for ex in exs if ex["tokens"]]
        raw[split] = exs
    return build_corpus(raw, scheme, notes)


def read_cluener(
    data_dir: str | Path,
    scheme: str = "BIOS",
    splits: Sequence[str] = ("train", "dev", "test"),
    max_chars: int | None = None,
) -> Corpus:
    """Read the CLUENER2020 folder layout: ``{split}.json`` for each split present."""
    data_dir = Path(data_dir)
    files = {split: data_dir / f"{split}.json" for split in splits if (data_dir / f"{split}.json").exists()}
    if not files:
        raise UserError(f"no CLUENER split ({', '.join(s + '.json' for s in splits)}) in {data_dir}")
    return read_cluener_files(files, scheme, max_chars)


# ---------------------------------------------------------------------------------------------
# what to do with ill-formed tag sequences, shared by the readers of tagged sentences

BAD_TAGS = ("error", "repair", "skip")


@dataclass
class ReadOptions:
    """How the readers of tagged sentences (column files, ``tokens``/``ner_tags`` JSON, ``datasets``
    datasets) read what they are given; train.py's flags of the same names.

    * ``bad_tags``: a sentence whose tags are ill-formed in their scheme (``O I-PER``, an entity
      left open at a sentence break) is an ``error`` (file:line), is read leniently (``repair``:
      :func:`~modeling.tag_schemes.lenient_spans`, as conlleval and seqeval's default mode read
      it), or is dropped (``skip``). Repaired and skipped sentences are listed with their
      file:line in the read notes and in :attr:`ReadReport`.
    * ``token_column`` / ``tag_column``: column indices of column files (0-based, negative from the
      end); by default the first and the last, and a file with more than two columns gets a note.
    * ``token_first_char``: a token of several characters (``科0``: a character and a segmentation
      digit) is read as its first character, with a note; without it such a token is an error.
    * ``tag_names``: the tag of each id, when ``ner_tags`` are integers without a ``ClassLabel``.
    * ``text_column_name`` / ``label_column_name``: the token and tag columns of JSON files and
      ``datasets`` datasets (default ``tokens`` / ``ner_tags``, as run_ner.py).
    """

    bad_tags: str = "error"
    token_column: int | None = None
    tag_column: int | None = None
    token_first_char: bool = False
    tag_names: list[str] | None = None
    text_column_name: str | None = None
    label_column_name: str | None = None

    def __post_init__(self):
        if self.bad_tags not in BAD_TAGS:
            raise UserError(f"bad_tags must be one of {', '.join(BAD_TAGS)}, got {self.bad_tags!r}")


def _tags_to_example(
    sentence: dict, source: str, options: ReadOptions, path, repaired: list[str], skipped: list[str]
) -> dict | None:
    """A sentence ``{"id", "tokens", "tags", "lines"}`` -> an example with spans, following ``options.bad_tags``.

    ``lines`` gives, per tag, where it was read (a line number, or None for a record without one)."""
    try:
        spans = tags_to_spans(sentence["tags"], source, strict=True)
    except TagSequenceError as err:
        lines = sentence["lines"]
        line = lines[min(err.position if err.position is not None else 0, len(lines) - 1)] if lines else None
        where = f"{Path(path).name}:{line}" if line is not None else f"{Path(path).name} {sentence['where']}"
        if options.bad_tags == "error":
            raise DataFormatError(
                path,
                line,
                f"{err}{'' if line is not None else ' (' + sentence['where'] + ')'}; "
                "pass --bad_tags repair to read such sentences leniently, or --bad_tags skip to leave them out",
            ) from None
        if options.bad_tags == "skip":
            skipped.append(where)
            return None
        spans = lenient_spans(sentence["tags"], source)
        repaired.append(where)
    return {"id": sentence["id"], "tokens": sentence["tokens"], "spans": spans}


def _bad_tag_notes(split: str, repaired: list[str], skipped: list[str], shown: int = 10) -> list[str]:
    notes = []
    for what, places in (
        ("repaired (read leniently: --bad_tags repair)", repaired),
        ("skipped (--bad_tags skip)", skipped),
    ):
        if places:
            more = f" and {len(places) - shown} more (all in all_results.json)" if len(places) > shown else ""
            notes.append(
                f"{split}: {len(places)} sentences with ill-formed tags {what}: {', '.join(places[:shown])}{more}"
            )
    return notes


def _examples_from_tagged(
    read: dict[str, tuple], scheme: str | None, options: ReadOptions, notes: list[str], report: "ReadReport"
) -> dict[str, list[dict]]:
    """Sentences with tags, per split (``{split: (path, sentences)}``) -> examples with spans in the
    source scheme (``scheme``, or detected from every split's tags)."""
    for split, (path, sents) in read.items():
        for sent in sents:
            for k, (t, ln) in enumerate(zip(sent["tags"], sent["lines"])):
                try:
                    split_tag(t)
                except TagSequenceError:
                    where = "" if ln is not None else f" ({sent['where']}, tag {k})"
                    raise DataFormatError(
                        path, ln, f"unknown tag {t!r} (expected 'O' or '<prefix>-<type>'){where}"
                    ) from None
    all_tags = {t for _, sents in read.values() for s in sents for t in s["tags"]}
    source = check_scheme(scheme or detect_scheme(all_tags))
    notes.append(f"source tag scheme {source} ({'declared' if scheme else 'detected'})")
    out = {}
    for split, (path, sents) in read.items():
        repaired, skipped = [], []
        exs = [
            ex
            for sent in sents
            if (ex := _tags_to_example(sent, source, options, path, repaired, skipped)) is not None
        ]
        notes += _bad_tag_notes(split, repaired, skipped)
        report.repaired[split], report.skipped[split] = repaired, skipped
        out[split] = exs
    return out


def _finish(
    raw: dict[str, list[dict]], target_scheme: str, notes: list[str], report: ReadReport, max_chars: int | None
) -> Corpus:
    for split in raw:
        if max_chars:
            raw[split], n = split_long_examples(raw[split], max_chars)
            notes += [f"{split}: {x}" for x in n]
    return build_corpus(raw, target_scheme, notes, report=report)


# ---------------------------------------------------------------------------------------------
# column files


def _column_fields(line: str) -> list[str]:
    """A column line's fields: split at tabs when the line has any (a field may then hold a space
    character), else at spaces, where a line that starts with a space has that space as its token
    (a space character of the text, kept in its position). Trailing blanks are not a field."""
    line = line[0] + line[1:].rstrip(" \t")
    if "\t" in line:
        return [f for f in re.split(r"\t+", line) if f != ""]
    if line[0] == " ":
        return [" ", *line[1:].split()]
    return line.split()


def _read_column_file(path: Path, options: ReadOptions, encoding: str = "utf-8") -> tuple[list[dict], dict]:
    """Sentences ``{"id", "tokens", "tags", "lines"}`` (a line number per character); blank lines
    separate sentences. Also returns counts for the notes."""
    sentences, chars, tags, lines = [], [], [], []
    stats = {"blank_runs": 0, "columns": None, "first_char": 0, "example": None}
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()

    def flush() -> None:
        nonlocal chars, tags, lines
        if chars:
            sentences.append({"id": str(len(sentences)), "tokens": chars, "tags": tags, "lines": lines, "where": ""})
        chars, tags, lines = [], [], []

    for lineno, raw_line in enumerate(raw_lines, 1):
        try:
            line = raw_line.decode(encoding).rstrip("\r")
        except UnicodeDecodeError as e:
            raise DataFormatError(
                path, lineno, f"cannot be decoded as {encoding} (byte {e.start}); pass the file's encoding"
            ) from None
        if not line.strip():
            if not chars:
                stats["blank_runs"] += 1
            flush()
            continue
        parts = _column_fields(line)
        if stats["columns"] is None:
            stats["columns"] = len(parts)
            if len(parts) < 2:
                raise DataFormatError(path, lineno, f"expected 2 columns '<char> <tag>', got {len(parts)}: {line!r}")
        if len(parts) != stats["columns"]:
            raise DataFormatError(
                path,
                lineno,
                f"expected {stats['columns']} columns as on the file's first line, got {len(parts)}: {line!r}",
            )
        try:
            token, tag = (
                parts[0 if options.token_column is None else options.token_column],
                parts[-1 if options.tag_column is None else options.tag_column],
            )
        except IndexError:
            raise DataFormatError(
                path,
                lineno,
                f"--token_column {options.token_column} / --tag_column {options.tag_column} "
                f"but the line has {len(parts)} columns: {line!r}",
            ) from None
        if len(token) != 1:
            if not options.token_first_char:
                raise DataFormatError(
                    path,
                    lineno,
                    f"expected one character in the token column, got {token!r} "
                    "(for tokens that carry a suffix, such as a segmentation digit, pass --token_first_char)",
                )
            stats["first_char"] += 1
            stats["example"] = stats["example"] or token
            token = token[0]
        chars.append(token)
        tags.append(tag)
        lines.append(lineno)
    flush()
    return sentences, stats


def read_column_files(
    files: dict[str, str | Path],
    scheme: str | None = None,
    target_scheme: str = "BIOS",
    encoding: str = "utf-8",
    max_chars: int | None = None,
    options: ReadOptions | None = None,
) -> Corpus:
    """Read column files (``char<TAB or SPACE>tag``, or CoNLL-style ``char ... tag``), one per
    split, blank line between sentences.

    ``scheme`` is the files' tag scheme (BIO, BIOS, BIOES, BIEO, BMES); ``None`` detects it from
    the tags of all files together. Tags are rewritten in ``target_scheme``. Sentences longer
    than ``max_chars`` are split at punctuation without cutting an entity. ``options``: columns,
    suffixed tokens and ill-formed tags (:class:`ReadOptions`).
    """
    options = options or ReadOptions()
    read, notes, report = {}, [], ReadReport()
    for split, path in files.items():
        sents, stats = _read_column_file(Path(path), options, encoding)
        read[split] = (Path(path), sents)
        columns = stats["columns"] or 2
        if columns > 2 or options.token_column is not None or options.tag_column is not None:
            token = 0 if options.token_column is None else options.token_column % columns
            tag = columns - 1 if options.tag_column is None else options.tag_column % columns
            how = (
                "given"
                if options.token_column is not None or options.tag_column is not None
                else "the first and the last; --token_column / --tag_column choose others"
            )
            notes.append(f"{split}: {columns} columns: tokens from column {token}, tags from column {tag} ({how})")
        if stats["first_char"]:
            notes.append(
                f"{split}: {stats['first_char']} tokens of several characters read as their first character "
                f"(--token_first_char), e.g. {stats['example']!r} -> {stats['example'][0]!r}"
            )
        if stats["blank_runs"] > 1:
            notes.append(f"{split}: {stats['blank_runs']} extra blank lines between sentences were ignored")
    raw = _examples_from_tagged(read, scheme, options, notes, report)
    return _finish(raw, target_scheme, notes, report, max_chars)


# ---------------------------------------------------------------------------------------------
# tokens / ner_tags records: JSON, JSON lines, datasets (run_ner.py's conventions)


def is_token_json(path: str | Path) -> bool:
    """Whether a ``.json`` / ``.jsonl`` file holds ``tokens``/``ner_tags`` records rather than CLUENER's
    ``text``/``label``."""
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if head.startswith("["):
        return '"text"' not in head.split("}", 1)[0]
    first = head.split("\n", 1)[0]
    try:
        obj = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and "text" not in obj


def _records_to_sentences(
    records: Iterable[tuple[int | None, str, dict]],
    path,
    options: ReadOptions,
    feature_names: list[str] | None,
    notes: list[str],
    split: str,
) -> list[dict]:
    """``(line or None, where, record)`` -> sentences with string tags."""
    text_col, label_col = options.text_column_name or "tokens", options.label_column_name or "ner_tags"
    names = options.tag_names or feature_names
    sentences, first_char = [], []
    for line, where, rec in records:
        if not isinstance(rec, dict) or text_col not in rec or label_col not in rec:
            keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            raise DataFormatError(
                path,
                line,
                f"{where}: expected columns {text_col!r} and {label_col!r} (--text_column_name / "
                f"--label_column_name), got {keys}",
            )
        tokens, tags = rec[text_col], rec[label_col]
        if isinstance(tokens, str):
            tokens = list(tokens)
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise DataFormatError(path, line, f"{where}: {text_col!r} and {label_col!r} must be lists")
        if len(tokens) != len(tags):
            raise DataFormatError(path, line, f"{where}: {len(tokens)} tokens but {len(tags)} tags")
        for token in tokens:
            if not isinstance(token, str) or not token:
                raise DataFormatError(path, line, f"{where}: expected one character per token, got {token!r}")
            if len(token) > 1 and not options.token_first_char:
                raise DataFormatError(
                    path,
                    line,
                    f"{where}: expected one character per token, got {token!r} "
                    "(pass --token_first_char to read a token's first character)",
                )
        first_char += [t for t in tokens if len(t) > 1]
        tokens = [t[0] for t in tokens]
        if any(isinstance(t, bool) or not isinstance(t, (int, str)) for t in tags):
            raise DataFormatError(path, line, f"{where}: tags must be strings or integer ids")
        if any(isinstance(t, int) for t in tags):
            if not names:
                raise DataFormatError(
                    path,
                    line,
                    f"{where}: {label_col!r} holds integer ids: pass --tag_names (the tag of each id, in order)",
                )
            if not all(isinstance(t, int) and 0 <= t < len(names) for t in tags):
                raise DataFormatError(
                    path,
                    line,
                    f"{where}: tag ids must be integers in [0, {len(names)}) for the {len(names)} label names",
                )
            tags = [names[t] for t in tags]
        sentences.append(
            {
                "id": str(rec.get("id", len(sentences))),
                "tokens": tokens,
                "tags": tags,
                "lines": [line] * len(tags),
                "where": where,
            }
        )
    if first_char:
        notes.append(
            f"{split}: {len(first_char)} tokens of several characters read as their first character "
            f"(--token_first_char), e.g. {first_char[0]!r} -> {first_char[0][0]!r}"
        )
    return sentences


def _json_records(path: Path):
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
        return [(None, f"record {k}", rec) for k, rec in enumerate(data)]
    out = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append((lineno, f"record {len(out)}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataFormatError(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
    return out


def read_token_json_files(
    files: dict[str, str | Path],
    scheme: str | None = None,
    target_scheme: str = "BIOS",
    max_chars: int | None = None,
    options: ReadOptions | None = None,
) -> Corpus:
    """Read JSON or JSON-lines files of ``{"tokens": [...], "ner_tags": [...]}`` records, one per split
    (run_ner.py's layout); tags are strings, or integer ids with ``options.tag_names``."""
    options = options or ReadOptions()
    notes, report = [], ReadReport()
    read = {
        split: (Path(path), _records_to_sentences(_json_records(Path(path)), Path(path), options, None, notes, split))
        for split, path in files.items()
    }
    raw = _examples_from_tagged(read, scheme, options, notes, report)
    return _finish(raw, target_scheme, notes, report, max_chars)


def read_hf_dataset(
    name_or_path: str,
    scheme: str | None = None,
    target_scheme: str = "BIOS",
    max_chars: int | None = None,
    options: ReadOptions | None = None,
) -> Corpus:
    """A ``datasets`` dataset with token and tag columns: a folder written by ``save_to_disk``, or a
    Hub dataset id (needs the network). A ``ClassLabel`` tag feature gives the label names."""
    from datasets import load_dataset, load_from_disk

    options = options or ReadOptions()
    if Path(name_or_path).exists():
        loaded = load_from_disk(name_or_path)
    else:
        try:
            loaded = load_dataset(name_or_path)
        except Exception as err:
            raise UserError(
                f"--dataset_name {name_or_path!r} is neither a save_to_disk folder nor a dataset the Hub "
                f"could give here ({type(err).__name__}: {str(err)[:300]})"
            ) from None
    if not isinstance(loaded, DatasetDict):
        loaded = DatasetDict({"train": loaded})
    read, notes, report = {}, [f"dataset {name_or_path} (splits {', '.join(loaded)})"], ReadReport()
    for split, ds in loaded.items():
        split_name = {"dev": "validation"}.get(split, split)
        label_col = options.label_column_name or "ner_tags"
        feature = ds.features.get(label_col)
        names = getattr(getattr(feature, "feature", None), "names", None)
        records = ((None, f"split {split}, row {k}", row) for k, row in enumerate(ds))
        read[split_name] = (
            Path(name_or_path),
            _records_to_sentences(records, name_or_path, options, names, notes, split_name),
        )
    raw = _examples_from_tagged(read, scheme, options, notes, report)
    return _finish(raw, target_scheme, notes, report, max_chars)


# ---------------------------------------------------------------------------------------------
# People's Daily, January 1998 (PKU word/POS annotation)

PD_ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
PD_PAPER_SPLIT = (15850, 3962)
_DOC_ID = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}/m$")


def parse_peoples_daily_line(
    line: str, path: str | Path = "<line>", lineno: int | None = None
) -> tuple[list[str], list[Span]]:
    """One annotated paragraph -> characters and PER/LOC/ORG spans.

    Drops the leading document id; ``nr`` surname + ``nr`` given name form one PER; ``ns`` is LOC
    and ``nt`` ORG; a bracketed compound ``[w1/p w2/p]nt`` / ``]ns`` is one entity (its parts are
    not tagged separately), other compounds (``]nz``, ``]l``, ``]i``) contribute their parts.
    """
    tokens = line.split()
    if not tokens:
        return [], []
    if not _DOC_ID.match(tokens[0]):
        raise DataFormatError(
            path, lineno, f"expected a document id like 19980101-01-001-001/m first, got {tokens[0]!r}"
        )
    words: list[tuple[str, str]] = []  # (word, pos)
    compounds: list[tuple[int, int, str]] = []  # word index range [a, b) and compound tag
    open_at = None
    for tok in tokens[1:]:
        opening = tok.startswith("[") and "/" in tok[1:]
        if opening:
            if open_at is not None:
                raise DataFormatError(path, lineno, f"nested '[' at {tok!r}")
            open_at = len(words)
            tok = tok[1:]
        closing_tag = None
        m = re.match(r"^(.*)\](\w+)$", tok)
        if m and "/" in m.group(1):
            tok, closing_tag = m.group(1), m.group(2)
        if "/" not in tok:
            raise DataFormatError(path, lineno, f"token {tok!r} has no '/pos'")
        word, pos = tok.rsplit("/", 1)
        if not word:
            raise DataFormatError(path, lineno, f"empty word in token {tok!r}")
        words.append((word, pos))
        if closing_tag is not None:
            if open_at is None:
                raise DataFormatError(path, lineno, f"']{closing_tag}' without '['")
            compounds.append((open_at, len(words), closing_tag))
            open_at = None
    if open_at is not None:
        raise DataFormatError(path, lineno, "'[' compound is never closed")

    # entity units over word indices
    units: list[tuple[int, int, str]] = []
    in_compound = [False] * len(words)
    for a, b, tag in compounds:
        if tag in PD_ENTITY_TYPES:
            units.append((a, b, PD_ENTITY_TYPES[tag]))
            for k in range(a, b):
                in_compound[k] = True
    k = 0
    while k < len(words):
        word, pos = words[k]
        if in_compound[k] or pos not in PD_ENTITY_TYPES:
            k += 1
            continue
        end = k + 1
        if (
            pos == "nr"
            and k + 1 < len(words)
            and words[k + 1][1] == "nr"
            and not in_compound[k + 1]
            and len(word) <= 2
        ):
            end = k + 2  # surname + given name
        units.append((k, end, PD_ENTITY_TYPES[pos]))
        k = end
    offsets = [0]
    for word, _ in words:
        offsets.append(offsets[-1] + len(word))
    chars = [c for word, _ in words for c in word]
    spans = sorted((Span(t, offsets[a], offsets[b]) for a, b, t in units), key=lambda s: s.start)
    return chars, spans


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def read_peoples_daily_1998(
    path: str | Path,
    scheme: str = "BIOS",
    max_chars: int = 126,
    test_ratio: float = 0.2,
    seed: int = 42,
    encoding: str = "gbk",
) -> Corpus:
    """Read the raw January 1998 corpus (GBK): one example per non-empty line, seeded train/test split.

    Lines are split into train/test (``test_ratio``) *before* long lines are cut at sentence
    punctuation to fit ``max_chars``, so the pieces of one paragraph stay in one split.
    """
    path = Path(path)
    data = path.read_bytes()
    if encoding.lower() in ("gbk", "gb2312", "gb18030") and not data.isascii() and _is_utf8(data):
        # UTF-8 Chinese often decodes as (wrong) GBK without error: refuse the file rather than read mojibake
        lineno = next(i for i, l in enumerate(data.split(b"\n"), 1) if not l.isascii())
        raise DataFormatError(
            path, lineno, f"cannot be decoded as {encoding}: the file is UTF-8; pass encoding='utf-8'"
        )
    examples, blank = [], 0
    # split on \n only, as editors number lines (some lines of the 1998 file end in \r\r\n)
    for lineno, raw_line in enumerate(data.split(b"\n"), 1):
        raw_line = raw_line.rstrip(b"\r")
        try:
            line = raw_line.decode(encoding)
        except UnicodeDecodeError as e:
            raise DataFormatError(
                path, lineno, f"cannot be decoded as {encoding} (byte {e.start}); is this the GBK file?"
            ) from None
        if not line.strip():
            blank += 1
            continue
        chars, spans = parse_peoples_daily_line(line, path, lineno)
        examples.append({"id": f"{line.split(None, 1)[0][:-2]}@{lineno}", "tokens": chars, "spans": spans})
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = round(len(examples) * test_ratio)
    test_idx = set(order[:n_test])
    train = [ex for i, ex in enumerate(examples) if i not in test_idx]
    test = [ex for i, ex in enumerate(examples) if i in test_idx]
    notes = [
        f"{len(examples)} non-empty lines ({blank} blank lines skipped) split {len(train)}/{len(test)} "
        f"(seed {seed}, test ratio {test_ratio}); the paper reports {PD_PAPER_SPLIT[0]}/{PD_PAPER_SPLIT[1]}"
    ]
    train, n1 = split_long_examples(train, max_chars, "train lines")
    test, n2 = split_long_examples(test, max_chars, "test lines")
    notes += n1 + n2
    return build_corpus({"train": train, "test": test}, scheme, notes, types=PD_ENTITY_TYPES.values())
