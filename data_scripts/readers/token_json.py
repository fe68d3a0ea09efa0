"""``tokens`` / ``ner_tags`` records (run_ner.py's conventions): JSON, JSON lines, ``datasets`` datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from datasets import DatasetDict

from ..errors import UserError
from .corpus import Corpus, DataFormatError
from .tagged import ReadOptions, corpus_from_tagged


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
    split: str,
) -> tuple[list[dict], list[str]]:
    """``(line or None, where, record)`` -> sentences with string tags, and notes on what reading did."""
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
    notes = []
    if first_char:
        notes.append(
            f"{split}: {len(first_char)} tokens of several characters read as their first character "
            f"(--token_first_char), e.g. {first_char[0]!r} -> {first_char[0][0]!r}"
        )
    return sentences, notes


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
    read, notes = {}, []
    for split, path in files.items():
        sentences, split_notes = _records_to_sentences(_json_records(Path(path)), Path(path), options, None, split)
        read[split] = (Path(path), sentences)
        notes += split_notes
    return corpus_from_tagged(read, scheme, target_scheme, options, notes, max_chars)


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
    read, notes = {}, [f"dataset {name_or_path} (splits {', '.join(loaded)})"]
    for split, ds in loaded.items():
        split_name = {"dev": "validation"}.get(split, split)
        label_col = options.label_column_name or "ner_tags"
        feature = ds.features.get(label_col)
        names = getattr(getattr(feature, "feature", None), "names", None)
        records = ((None, f"split {split}, row {k}", row) for k, row in enumerate(ds))
        sentences, split_notes = _records_to_sentences(records, name_or_path, options, names, split_name)
        read[split_name] = (Path(name_or_path), sentences)
        notes += split_notes
    return corpus_from_tagged(read, scheme, target_scheme, options, notes, max_chars)
