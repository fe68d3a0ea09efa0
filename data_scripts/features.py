"""Tokenizer choice and char-level features for training (labels aligned 1:1 with characters)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import normalizers
from transformers import AutoTokenizer, BertTokenizerFast

from modeling.char_tokenization import SPECIAL_TOKENS, encode_chars

from .errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BERT_VOCAB = "vocab/bert-base-chinese-vocab.txt"


def default_data_dir() -> Path:
    """``$NER_DATA_DIR`` or ``../shared/data`` beside the project."""
    return Path(os.environ.get("NER_DATA_DIR", SHARED_DATA))


def build_char_vocab(token_lists: Iterable[Sequence[str]], path: str | Path, min_freq: int = 1) -> Path:
    """Write a ``vocab.txt`` (BERT format) of the characters of a corpus, most frequent first.

    Characters are normalised as ``BertTokenizerFast`` normalises its input (lower case, accents
    stripped), so every character of the corpus finds its entry.
    """
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    counts: Counter = Counter()
    for tokens in token_lists:
        for ch in tokens:
            norm = normalizer.normalize_str(ch).strip()
            if norm:
                counts[norm[0]] += 1
    chars = [
        c
        for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if n >= min_freq and c not in SPECIAL_TOKENS
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(SPECIAL_TOKENS + chars) + "\n", encoding="utf-8")
    return path


def load_tokenizer(
    name_or_path: str | None = None,
    train_tokens: Iterable[Sequence[str]] | None = None,
    work_dir: str | Path = ".",
    model_max_length: int | None = None,
):
    """The tokenizer, in this order of preference:

    1. ``name_or_path``: a ``vocab.txt`` file, or a model folder / Hub id with a BERT-style tokenizer;
    2. the Chinese BERT vocabulary in ``$NER_DATA_DIR`` (``../shared/data``) if present;
    3. a character vocabulary built from ``train_tokens`` (written to ``work_dir/vocab.txt``).

    ``model_max_length``: the model's window in tokens, saved with the tokenizer. Returns the
    tokenizer and a sentence saying which one it is.
    """
    kwargs = {"model_max_length": model_max_length} if model_max_length else {}
    if name_or_path:
        if Path(name_or_path).is_file():
            return BertTokenizerFast(vocab=str(name_or_path), **kwargs), f"vocabulary file {name_or_path}"
        try:
            return AutoTokenizer.from_pretrained(name_or_path, **kwargs), f"tokenizer of {name_or_path}"
        except OSError as error:  # no such folder, and no Hub id reachable
            raise UserError(f"no tokenizer at {name_or_path}: {str(error).splitlines()[0]}") from None
    shared = default_data_dir() / BERT_VOCAB
    if shared.is_file():
        return BertTokenizerFast(vocab=str(shared), **kwargs), f"Chinese BERT vocabulary {shared}"
    if train_tokens is None:
        raise UserError("no tokenizer given, no shared BERT vocabulary found, and no corpus to build one from")
    path = build_char_vocab(train_tokens, Path(work_dir) / "vocab.txt")
    tok = BertTokenizerFast(vocab=str(path), **kwargs)
    return tok, f"character vocabulary built from the training corpus ({len(tok)} tokens, {path})"


def tokenize_and_align(examples: dict, tokenizer, max_length: int, label_column: str = "ner_tags") -> dict:
    """``datasets.map(batched=True)`` function: characters -> ids, tags -> labels (``-100`` on specials)."""
    enc = encode_chars(tokenizer, examples["tokens"], max_length=max_length)
    if label_column in examples:
        enc["labels"] = [[-100] + list(tags[:n]) + [-100] for tags, n in zip(examples[label_column], enc["num_chars"])]
    return enc
