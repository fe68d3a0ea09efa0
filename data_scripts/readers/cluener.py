"""CLUENER2020 JSON lines: ``{"text": ..., "label": {type: {surface: [[start, end_inclusive], ...]}}}``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from modeling.tag_schemes import Span

from ..errors import UserError
from .corpus import Corpus, DataFormatError, build_corpus, split_long_examples


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
