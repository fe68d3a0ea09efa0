"""Unlabelled text to tag, read as a stream of rows from the files users have (``predict.py``).

=====================  ==============================================================================
input                  a row
=====================  ==============================================================================
``.txt``               a line (an empty line is an empty text, so row ``k`` is line ``k + 1``)
``.jsonl`` / ``.json``  a JSON object a line, its ``text_column``; a ``.json`` file that starts with ``[``
                       is one array of objects (read whole: use JSON lines for large inputs)
``.csv`` / ``.tsv``     a record after the header line, its ``text_column``
``.parquet``           a record, its ``text_column`` (read by record batches)
a folder               a ``datasets`` ``save_to_disk`` folder (memory-mapped), its ``text_column``
=====================  ==============================================================================

Every file is read lazily, a row at a time, so memory does not grow with the input. A row that is not a text
(invalid JSON, a missing column, a value that is not a string) is yielded as a :class:`Row` with ``error`` set,
naming its file and line, so the caller reports or stops on it and never loses it silently.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path
from typing import Iterator, NamedTuple

from .errors import UserError

SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".tsv", ".parquet")
PARQUET_BATCH_ROWS = 4096


class Row(NamedTuple):
    """Row ``row`` (0-based) of ``file``, at ``line`` (1-based; the record's number for Parquet and datasets), with
    its ``text``, or the ``error`` that makes it no text."""

    file: str
    row: int
    line: int
    text: str | None
    error: str | None = None


def expand_inputs(patterns: list[str]) -> list[str]:
    """Paths and glob patterns -> the input files and ``datasets`` folders, in the order given (a pattern's
    matches sorted), each once."""
    out: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise UserError(f"--input {pattern!r} matches no file")
        for path in matches:
            if not os.path.exists(path):
                raise UserError(f"--input {path!r}: no such file or folder")
            if os.path.isdir(path) and not (Path(path) / "dataset_info.json").exists():
                raise UserError(f"--input {path!r} is a folder but not a datasets save_to_disk folder")
            if os.path.isfile(path) and Path(path).suffix.lower() not in SUFFIXES:
                raise UserError(
                    f"--input {path!r}: unknown file type {Path(path).suffix!r}; predict.py reads "
                    f"{', '.join(SUFFIXES)} files and datasets save_to_disk folders"
                )
            if path not in out:
                out.append(path)
    return out


def iter_rows(path: str, text_column: str = "text") -> Iterator[Row]:
    """The rows of one input (see the module docstring)."""
    if os.path.isdir(path):
        yield from _dataset_rows(path, text_column)
        return
    suffix = Path(path).suffix.lower()
    if suffix == ".txt":
        yield from _text_rows(path)
    elif suffix == ".parquet":
        yield from _parquet_rows(path, text_column)
    elif suffix in (".csv", ".tsv"):
        yield from _csv_rows(path, text_column, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".json" and _starts_with(path, "["):
        yield from _json_array_rows(path, text_column)
    else:
        yield from _json_lines_rows(path, text_column)


def _text_rows(path: str) -> Iterator[Row]:
    for k, line in enumerate(_lines(path)):
        yield Row(path, k, k + 1, line.rstrip("\r\n"))


def _lines(path: str) -> Iterator[str]:
    """The lines of a UTF-8 file (a BOM dropped), decoded one by one so that bytes that are not UTF-8 are named with
    their line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start + 1})") from None
            yield line


def _value(record, text_column: str) -> tuple[str | None, str | None]:
    if not isinstance(record, dict):
        return None, f"expected a JSON object with a {text_column!r} field, got {type(record).__name__}"
    if text_column not in record:
        return None, f"no {text_column!r} field (fields: {', '.join(map(str, list(record)[:8]))})"
    value = record[text_column]
    if not isinstance(value, str):
        return None, f"{text_column!r} is {type(value).__name__}, not a string"
    return value, None


def _json_lines_rows(path: str, text_column: str) -> Iterator[Row]:
    row = 0
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            yield Row(path, row, number, None, f"invalid JSON ({err.msg} at column {err.colno})")
        else:
            yield Row(path, row, number, *_value(record, text_column))
        row += 1


def _json_array_rows(path: str, text_column: str) -> Iterator[Row]:
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: invalid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(records, list):
        raise UserError(f"{path}: a .json input is JSON lines or one array of objects, not a {type(records).__name__}")
    for k, record in enumerate(records):
        yield Row(path, k, k + 1, *_value(record, text_column))


def _csv_rows(path: str, text_column: str, delimiter: str) -> Iterator[Row]:
    reader = csv.reader(_lines(path), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    if text_column not in header:
        raise UserError(f"{path}:1: no {text_column!r} column (columns: {', '.join(header[:8])}); see --text_column")
    column = header.index(text_column)
    for k, record in enumerate(reader):
        if len(record) != len(header):
            yield Row(path, k, reader.line_num, None, f"{len(record)} fields where the header has {len(header)}")
        else:
            yield Row(path, k, reader.line_num, record[column])


def _parquet_rows(path: str, text_column: str) -> Iterator[Row]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    if text_column not in file.schema_arrow.names:
        raise UserError(f"{path}: no {text_column!r} column (columns: {', '.join(file.schema_arrow.names[:8])})")
    k = 0
    for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_column]):
        for value in batch.column(0).to_pylist():
            yield _typed_row(path, k, value, text_column)
            k += 1


def _dataset_rows(path: str, text_column: str) -> Iterator[Row]:
    from datasets import DatasetDict, load_from_disk

    dataset = load_from_disk(path)
    if isinstance(dataset, DatasetDict):
        raise UserError(f"{path}: a DatasetDict ({', '.join(dataset)}); give one split's folder, e.g. {path}/train")
    if text_column not in dataset.column_names:
        raise UserError(f"{path}: no {text_column!r} column (columns: {', '.join(dataset.column_names[:8])})")
    k = 0
    for batch in dataset.select_columns([text_column]).iter(batch_size=PARQUET_BATCH_ROWS):
        for value in batch[text_column]:
            yield _typed_row(path, k, value, text_column)
            k += 1


def _typed_row(path: str, k: int, value, text_column: str) -> Row:
    if isinstance(value, str):
        return Row(path, k, k + 1, value)
    return Row(path, k, k + 1, None, f"{text_column!r} is {type(value).__name__}, not a string")


def _starts_with(path: str, char: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        while True:
            block = f.read(4096)
            if not block:
                return False
            stripped = block.lstrip("\ufeff \t\r\n")
            if stripped:
                return stripped[0] == char
