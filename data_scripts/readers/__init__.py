"""Corpus readers: CLUENER JSON lines, column files, and the People's Daily 1998 raw corpus.

Every reader returns a :class:`Corpus`: its splits are ``datasets.Dataset`` objects with columns
``id``, ``tokens`` (a list of characters) and ``ner_tags`` (``Sequence(ClassLabel)`` in the
requested tag scheme; absent in an unlabelled split), and its ``notes`` say what reading did to
the data (lines skipped and why, long lines split, ...); :func:`print_summary` prints them with
the sentence and entity counts. Malformed input raises :class:`DataFormatError` naming file and line.
"""

from __future__ import annotations

from .cluener import read_cluener, read_cluener_files
from .columns import read_column_files
from .corpus import (
    Corpus,
    DataFormatError,
    ReadReport,
    build_corpus,
    dataset_spans,
    print_summary,
    split_long_examples,
)
from .peoples_daily import PD_ENTITY_TYPES, PD_PAPER_SPLIT, parse_peoples_daily_line, read_peoples_daily_1998
from .tagged import BAD_TAGS, ReadOptions
from .token_json import is_token_json, read_hf_dataset, read_token_json_files

__all__ = [
    "BAD_TAGS",
    "Corpus",
    "DataFormatError",
    "PD_ENTITY_TYPES",
    "PD_PAPER_SPLIT",
    "ReadOptions",
    "ReadReport",
    "build_corpus",
    "dataset_spans",
    "is_token_json",
    "parse_peoples_daily_line",
    "print_summary",
    "read_cluener",
    "read_cluener_files",
    "read_column_files",
    "read_hf_dataset",
    "read_peoples_daily_1998",
    "read_token_json_files",
    "split_long_examples",
]
