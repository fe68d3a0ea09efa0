"""Column files: ``char<TAB or SPACE>tag`` (or CoNLL-style ``char ... tag``), a blank line between sentences."""

from __future__ import annotations

import re
from pathlib import Path

from .corpus import Corpus, DataFormatError
from .tagged import ReadOptions, corpus_from_tagged


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
    read, notes = {}, []
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
    return corpus_from_tagged(read, scheme, target_scheme, options, notes, max_chars)
