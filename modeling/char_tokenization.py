"""One token per character: the feature contract every model in this project shares.

Chinese NER labels characters, so the tokenizer (a ``BertTokenizerFast`` on the Chinese BERT
vocabulary, or on a character vocabulary built from a corpus) is run on the list of characters
with ``is_split_into_words=True`` and exactly one id is kept per character:

* a character the tokenizer keeps as one token gets that token's id (``'iPhone'`` -> ``i p h o n e``,
  ``'１'`` stays full-width if the vocabulary has it, ``'😀'`` -> ``[UNK]``);
* a character the tokenizer would drop (space, tab, zero-width and control characters) gets
  :data:`SPACE_TOKEN` so it keeps its position;
* a character the tokenizer would split into several pieces keeps the first piece;
* a lone surrogate (``'\\ud800'``, which no UTF-8 tokenizer can take) gets ``[UNK]``.

Token ``k + 1`` is therefore character ``k`` (``[CLS]`` comes first), so labels align 1:1 and a
prediction maps back to exact offsets in the original string. Sequences longer than
``max_length`` keep their first ``max_length - 2`` characters: the rest get no token, and callers
that must not lose text (the readers, the pipeline) cut long text into windows first
(:mod:`.text_splitting`).
"""

from __future__ import annotations

from typing import Sequence

SPACE_TOKEN = "[unused1]"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", SPACE_TOKEN]


def space_token_id(tokenizer) -> int:
    """Id given to characters the tokenizer drops (``[unused1]`` if the vocabulary has it, else ``[UNK]``).

    One token look-up: ``get_vocab()`` would rebuild the whole vocabulary dict (21,128 entries) on
    every call, which is most of the pipeline's time when it runs per window."""
    return tokenizer.convert_tokens_to_ids(SPACE_TOKEN)


def encode_chars(
    tokenizer,
    batch_chars: Sequence[Sequence[str]],
    max_length: int | None = None,
) -> dict[str, list[list[int]]]:
    """Encode lists of characters to ``input_ids`` / ``attention_mask`` / ``token_type_ids``.

    Each output has ``min(len(chars), max_length - 2) + 2`` ids: ``[CLS]``, one per character,
    ``[SEP]``. Also returns ``num_chars`` (how many characters got a token) per sequence.
    """
    if max_length is not None and max_length < 3:
        raise ValueError(f"max_length must be at least 3 ([CLS], one character, [SEP]), got {max_length}")
    batch_chars = [list(chars) for chars in batch_chars]
    for chars in batch_chars:
        for ch in chars:
            if len(ch) != 1:
                raise ValueError(f"expected single characters, got {ch!r}")
    # a lone surrogate (half of a UTF-16 pair, left by a bad decode) is no string the Rust tokenizer
    # can take: it goes in as the unknown token itself, so it keeps its position like any unknown character
    readable = [[tokenizer.unk_token if "\ud800" <= ch <= "\udfff" else ch for ch in chars] for chars in batch_chars]
    enc = tokenizer(readable, is_split_into_words=True, add_special_tokens=False)
    space_id = space_token_id(tokenizer)
    out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "token_type_ids": [], "num_chars": []}
    for b, chars in enumerate(batch_chars):
        ids = [space_id] * len(chars)
        seen = [False] * len(chars)
        for token_id, word in zip(enc["input_ids"][b], enc.word_ids(b)):
            if word is not None and not seen[word]:
                ids[word] = token_id
                seen[word] = True
        if max_length is not None:
            ids = ids[: max_length - 2]
        ids = [tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id]
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        out["token_type_ids"].append([0] * len(ids))
        out["num_chars"].append(len(ids) - 2)
    return out
