"""What the readers of tagged sentences (column files, tokens/tags JSON, ``datasets``) share: their options, and
sentences with string tags -> examples with spans, following ``--bad_tags``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modeling.tag_schemes import TagSequenceError, check_scheme, detect_scheme, lenient_spans, split_tag, tags_to_spans

from ..errors import UserError
from .corpus import Corpus, DataFormatError, ReadReport, build_corpus, split_long_examples

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


def _tags_to_example(sentence: dict, source: str, options: ReadOptions, path) -> tuple[dict | None, str, str]:
    """A sentence ``{"id", "tokens", "tags", "lines"}`` -> an example with spans (None if skipped), what was done
    (``read``, ``repaired`` or ``skipped``, following ``options.bad_tags``) and where the sentence was read.

    ``lines`` gives, per tag, where it was read (a line number, or None for a record without one)."""
    try:
        spans = tags_to_spans(sentence["tags"], source, strict=True)
        return {"id": sentence["id"], "tokens": sentence["tokens"], "spans": spans}, "read", ""
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
            return None, "skipped", where
    spans = lenient_spans(sentence["tags"], source)
    return {"id": sentence["id"], "tokens": sentence["tokens"], "spans": spans}, "repaired", where


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


def corpus_from_tagged(
    read: dict[str, tuple],
    scheme: str | None,
    target_scheme: str,
    options: ReadOptions,
    notes: list[str],
    max_chars: int | None,
) -> Corpus:
    """Sentences with tags, per split (``{split: (path, sentences)}``), read in ``scheme`` (or the one detected from
    every split's tags) -> the corpus in ``target_scheme``, with the reader's ``notes`` and what ``--bad_tags`` did;
    sentences longer than ``max_chars`` are cut at punctuation."""
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
    notes = [*notes, f"source tag scheme {source} ({'declared' if scheme else 'detected'})"]
    report, examples = ReadReport(), {}
    for split, (path, sents) in read.items():
        done = [_tags_to_example(sent, source, options, path) for sent in sents]
        report.repaired[split] = [where for _, what, where in done if what == "repaired"]
        report.skipped[split] = [where for _, what, where in done if what == "skipped"]
        notes += _bad_tag_notes(split, report.repaired[split], report.skipped[split])
        examples[split] = [ex for ex, _, _ in done if ex is not None]
        if max_chars:
            examples[split], cut = split_long_examples(examples[split], max_chars)
            notes += [f"{split}: {x}" for x in cut]
    return build_corpus(examples, target_scheme, notes, report=report)
