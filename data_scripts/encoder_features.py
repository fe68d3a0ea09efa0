"""What the BiLSTM's input features are built from (``modeling.char_features``): the bigram vocabulary of the
training split, and a lexicon (jieba's dictionary by default) as token ids, with the rows of the words the
training text shows. All of it goes into the model's buffers, so a saved folder needs neither jieba nor its
dictionary file."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Sequence

from modeling.char_features import FIRST_BIGRAM_ROW, FIRST_WORD_ROW, OTHER_WORD, id_string, id_strings, padded_ids
from modeling.char_tokenization import encode_chars, space_token_id

from .errors import UserError

MAX_WORD_LENGTH = 8  # longer dictionary words are few (idioms, transliterations) and cost automaton memory


def jieba_dictionary() -> Path:
    """The dictionary file installed with jieba (``word frequency POS`` lines)."""
    import jieba

    return Path(jieba.__file__).parent / "dict.txt"


def bigram_keys(input_ids: Sequence[Sequence[int]], vocab_size: int, min_count: int) -> list[int]:
    """The bigrams of the training split seen at least ``min_count`` times, as ``first * vocab_size + second``
    (each token with the next one, ``[CLS]`` and ``[SEP]`` included, as the model looks them up)."""
    counts = Counter(a * vocab_size + b for ids in input_ids for a, b in zip(ids, ids[1:]))
    return sorted(key for key, n in counts.items() if n >= min_count)


def read_lexicon(path: str | Path) -> dict[str, float]:
    """A dictionary file of ``word [frequency [POS]]`` lines (jieba's format; a missing frequency is 1)."""
    words: dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                freq = float(parts[1]) if len(parts) > 1 else 1.0
            except ValueError:
                raise UserError(f"{path}:{lineno}: expected 'word [frequency [POS]]', got {line.strip()!r}") from None
            if freq <= 0:
                raise UserError(f"{path}:{lineno}: the frequency of {parts[0]!r} must be positive, got {parts[1]}")
            words[parts[0]] = words.get(parts[0], 0.0) + freq
    return words


@dataclass
class Lexicon:
    """A lexicon in token ids: each word's ids, frequency and embedding row, and how many rows there are."""

    word_ids: list[tuple[int, ...]]
    freqs: list[float]
    rows: list[int]
    num_rows: int
    dropped: int  # dictionary words left out (an unknown or blank character, longer than MAX_WORD_LENGTH) or merged

    @property
    def word_length(self) -> int:
        return max((len(w) for w in self.word_ids), default=1)


def lexicon_in_ids(words: dict[str, float], tokenizer, train_input_ids: Sequence[Sequence[int]]) -> Lexicon:
    """``words`` as the model reads them: each word's token ids (words that the tokenizer makes alike, such as
    upper and lower case, become one, their frequencies added), and an embedding row of its own for each word
    the training split shows (the others share one)."""
    keep = [w for w in words if len(w) <= MAX_WORD_LENGTH]
    # all words as one sequence (a character's id does not depend on its neighbours), then cut apart
    flat = encode_chars(tokenizer, [list("".join(keep))])["input_ids"][0][1:-1]
    ends = accumulate(map(len, keep))
    unknown = {tokenizer.unk_token_id, space_token_id(tokenizer)}
    merged: dict[tuple[int, ...], float] = {}
    for word, end in zip(keep, ends):
        ids = tuple(flat[end - len(word) : end])
        if not unknown.intersection(ids):
            merged[ids] = merged.get(ids, 0.0) + words[word]
    word_ids = sorted(merged)

    import ahocorasick

    matcher = ahocorasick.Automaton()
    for k, key in enumerate(id_strings(padded_ids(word_ids, MAX_WORD_LENGTH))):
        matcher.add_word(key, k)
    matcher.make_automaton()
    seen = sorted({k for ids in train_input_ids for _, k in matcher.iter(id_string(ids))})
    rows = [OTHER_WORD] * len(word_ids)
    for row, k in enumerate(seen, FIRST_WORD_ROW):
        rows[k] = row
    return Lexicon(
        word_ids, [merged[w] for w in word_ids], rows, FIRST_WORD_ROW + len(seen), len(words) - len(word_ids)
    )


def word2vec_vectors(features, train_input_ids: Sequence[Sequence[int]], seed: int, epochs: int = 5) -> dict:
    """Skip-gram vectors (gensim's ``Word2Vec``) of the training split for the rows of the model's bigram and word
    tables (``CharFeatures``): the bigrams as they follow each other, the words along the lexicon's segmentation
    (``CharFeatures.words_of``; a character in no word stands for itself). ``{"bigrams" | "words": (rows,
    vectors)}`` for the tables the model has that the training text gives rows of."""
    try:
        from gensim.models import Word2Vec
        from gensim.models.callbacks import CallbackAny2Vec
    except ImportError:
        raise UserError("--feature_vectors word2vec needs gensim: pip install gensim") from None
    import torch
    from tqdm.auto import tqdm

    class Progress(CallbackAny2Vec):
        def __init__(self, bar):
            self.bar = bar

        def on_epoch_end(self, model):
            self.bar.update(1)

    sentences = {}
    if features.bigram_embeddings is not None:
        rows = [
            features.bigram_index(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0].tolist()
            for ids in train_input_ids
        ]
        sentences["bigrams"] = (features.bigram_embeddings.embedding_dim, [[str(r) for r in ids] for ids in rows])
    if features.word_embeddings is not None:
        words = features.words_of(train_input_ids)
        sentences["words"] = (features.word_embeddings.embedding_dim, [[str(r) for r in ids] for ids in words])
    logging.getLogger("gensim").setLevel(logging.WARNING)  # a progress bar instead of its lines per epoch
    out = {}
    for name, (size, text) in sentences.items():
        with tqdm(total=epochs, desc=f"word2vec of the training {name}", unit="epoch") as bar:
            model = Word2Vec(
                text, vector_size=size, window=5, min_count=1, sg=1, workers=1, seed=seed, epochs=epochs,
                callbacks=[Progress(bar)],
            )  # fmt: skip
        keys = [
            k for k in model.wv.index_to_key if int(k) >= (FIRST_BIGRAM_ROW if name == "bigrams" else FIRST_WORD_ROW)
        ]
        if keys:
            out[name] = ([int(k) for k in keys], model.wv[keys])
    return out
