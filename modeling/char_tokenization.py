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

import weakref
from typing import Sequence

SPACE_TOKEN = "[unused1]"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", SPACE_TOKEN]


def space_token_id(tokenizer) -> int:
    """Id given to characters the tokenizer drops (``[unused1]`` if the vocabulary has it, else ``[UNK]``).

    One token look-up: ``get_vocab()`` would rebuild the whole vocabulary dict (21,128 entries) on
    every call."""
    return tokenizer.convert_tokens_to_ids(SPACE_TOKEN)


class CharIdTable:
    """One tokenizer's id for every character it has been asked about.

    Each character goes to the tokenizer as a word of its own (``is_split_into_words``), so its id
    does not depend on its neighbours: a character is tokenized once, the first time it is seen,
    and looked up after that. The pipeline encodes every window of every call, and a dict look-up
    per character costs a fraction of a tokenizer call. :func:`char_table` keeps one table per
    tokenizer; a table is valid while the tokenizer's size is the one it was built for
    (``add_tokens`` makes a new one).
    """

    def __init__(self, tokenizer):
        self.size = len(tokenizer)
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.space_id = space_token_id(tokenizer)
        self.ids: dict[str, int] = {}

    def learn(self, tokenizer, chars: set) -> None:
        """Tokenize the characters of ``chars`` not in the table yet (one tokenizer call for all of them)."""
        new = [ch for ch in chars if ch not in self.ids]
        if not new:
            return
        for ch in new:
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"expected single characters, got {ch!r}")
        # a lone surrogate (half of a UTF-16 pair, left by a bad decode) is no string the Rust tokenizer
        # can take: it is the unknown token, so it keeps its position like any unknown character
        readable = [tokenizer.unk_token if "\ud800" <= ch <= "\udfff" else ch for ch in new]
        enc = tokenizer([[ch] for ch in readable], is_split_into_words=True, add_special_tokens=False)
        # what the tokenizer drops (blanks, zero-width, controls) keeps a place; a character split into
        # pieces keeps the first
        ids = [pieces[0] if pieces else self.space_id for pieces in enc["input_ids"]]
        self.ids.update(zip(new, ids))


_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def char_table(tokenizer) -> CharIdTable:
    """The :class:`CharIdTable` of ``tokenizer`` (made on first use, and again if the tokenizer grew)."""
    table = _TABLES.get(tokenizer)
    if table is None or table.size != len(tokenizer):
        table = _TABLES[tokenizer] = CharIdTable(tokenizer)
    return table


def texts_of_ids(token_chars, id_rows) -> list[str]:
    """The texts of ``[CLS] chars [SEP]`` id rows (no padding): each token the character it stands for
    (``token_chars``: token id -> code point, ``0`` for ``[UNK]`` and the specials, which become U+FFFD)."""
    table = list(token_chars)
    last = len(table) - 1
    return ["".join(chr(c) if c else "\ufffd" for c in (table[min(i, last)] for i in row[1:-1])) for row in id_rows]


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
    table = char_table(tokenizer)
    batch_chars = [list(chars) for chars in batch_chars]
    try:
        table.learn(tokenizer, set().union(*batch_chars))
    except TypeError as error:  # an unhashable item
        raise ValueError(f"expected single characters: {error}") from None
    keep = max_length - 2 if max_length is not None else None
    lookup = table.ids
    out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "token_type_ids": [], "num_chars": []}
    for chars in batch_chars:
        ids = [table.cls_id, *(lookup[ch] for ch in chars[:keep]), table.sep_id]
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        out["token_type_ids"].append([0] * len(ids))
        out["num_chars"].append(len(ids) - 2)
    return out
