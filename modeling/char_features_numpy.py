"""The lexicon features of the character BiLSTM in NumPy (softword, SoftLexicon word sets; bigram rows and the
features' embeddings for ONNX Runtime serving): the one place they are computed, by :class:`.char_features.
CharFeatures` (torch) and by ``onnx_pipeline`` (no torch). See :mod:`.char_features` for what each feature is.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from itertools import chain
from typing import Mapping, Sequence

import numpy as np

POSITIONS = ("B", "M", "E", "S")  # softword ids 1-4 and the four word sets, in this order; 0 is padding
NO_WORD, OTHER_WORD = 1, 2  # word-embedding rows: an empty set, a lexicon word the training text never showed
FIRST_WORD_ROW = 3  # rows of the words the training text showed start here (0 is padding)
UNKNOWN_BIGRAM, FIRST_BIGRAM_ROW = 1, 2  # bigram-embedding rows: a bigram not in the vocabulary, then the vocabulary's
_OFFSET = 0x10000  # token id i is the character chr(_OFFSET + i) of the automaton's keys


def id_string(ids: Sequence[int]) -> str:
    """Token ids as a string the automaton matches (one character per id)."""
    return (np.asarray(ids, dtype=np.uint32) + _OFFSET).astype("<u4").tobytes().decode("utf-32-le")


def id_strings(word_ids: np.ndarray) -> list[str]:
    """:func:`id_string` of each row of ``[words, width]`` token ids padded with 0 at the end, in one conversion (a
    lexicon has hundreds of thousands of words); a row of padding gives ``''``."""
    width = word_ids.shape[1]
    text = id_string(word_ids.reshape(-1))
    return [text[k * width : k * width + n] for k, n in enumerate((word_ids > 0).sum(1).tolist())]


def padded_ids(words: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """``[len(words), width]`` int32: each word's token ids, padded with 0."""
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    if len(words) and lengths.max() > width:
        raise ValueError(f"a word of {lengths.max()} tokens for a table {width} wide")
    out = np.zeros((len(words), width), dtype=np.int32)
    starts = np.cumsum(lengths) - lengths
    out[np.repeat(np.arange(len(words)), lengths), np.arange(lengths.sum()) - np.repeat(starts, lengths)] = (
        np.fromiter(chain.from_iterable(words), dtype=np.int32, count=int(lengths.sum()))
    )
    return out


class LexiconFeatures:
    """A lexicon (each word's token ids, frequency and embedding row) and the words taught after training, matched
    with an Aho-Corasick automaton (``pyahocorasick``); the softword ids and word sets of token sequences (those
    that ``softword`` / ``word_sets`` ask for; the other zeros), the last ``cache_size`` sequences' kept."""

    def __init__(
        self,
        word_ids: np.ndarray,
        freqs: np.ndarray,
        rows: np.ndarray,
        word_set_size: int,
        taught_words: Sequence[tuple[int, ...]] = (),
        first_taught_row: int = 0,
        cache_size: int = 4096,
        softword: bool = True,
        word_sets: bool = True,
    ):
        import ahocorasick

        freqs, rows = np.asarray(freqs, dtype=np.float64).copy(), np.asarray(rows, dtype=np.int64)
        # one array for the lexicon's and the taught words' frequencies, filled as the taught words are read
        freqs = np.concatenate([freqs, np.zeros(len(taught_words))])
        lengths = [(word_ids > 0).sum(1)]
        self.matcher = ahocorasick.Automaton()
        # a model built from its config before its lexicon is set holds rows of padding: no words
        for word, key in enumerate(id_strings(word_ids)):
            if key:
                self.matcher.add_word(key, word)
        self._lexicon_size = count = len(rows)
        taught_rows = []
        index = _WordIndex(self.matcher)
        for k, ids in enumerate(taught_words):
            freq = suggested_frequency(ids, index, freqs)
            if ids in index:  # a lexicon word, or taught twice (two entries that read alike)
                freqs[index[ids]] = max(freqs[index[ids]], freq)
            else:
                self.matcher.add_word(id_string(ids), count)
                lengths.append([len(ids)])
                freqs[count] = freq
                count += 1
                taught_rows.append(first_taught_row + k)
        freqs = freqs[:count]
        self.matcher.make_automaton()
        self._lengths = np.concatenate(lengths).astype(np.int64)
        self.softword, self.word_sets = softword, word_sets
        self._freqs = freqs
        with np.errstate(divide="ignore"):  # the padding rows' zero frequencies: never matched
            self._log_freqs = np.log(self._freqs).tolist()  # lists: the softword route reads them one by one
        self._length_list = self._lengths.tolist()
        self._log_total = math.log(self._freqs.sum()) if len(self.matcher) else 0.0
        self._word_rows = np.concatenate([rows, np.asarray(taught_rows, dtype=np.int64)])
        self.word_set_size, self.cache_size = word_set_size, cache_size
        self._rows: OrderedDict[tuple, tuple] = OrderedDict()

    def lexicon_rows(self, words: Sequence[Sequence[int]]) -> list[int]:
        """The word-embedding row of each of these token sequences that is a lexicon word (0 where none)."""
        found = [self.matcher.get(id_string(w), None) if len(w) else None for w in words]
        return [int(self._word_rows[k]) if k is not None and k < self._lexicon_size else 0 for k in found]

    def batch(self, input_ids: np.ndarray, lengths: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Softword ids ``[batch, length]``, word-set rows and weights ``[batch, length, 4, word_set_size]`` of
        left-aligned rows of token ids with these lengths."""
        batch, length = input_ids.shape
        texts = [tuple(ids[:n]) for ids, n in zip(input_ids.tolist(), lengths)]
        self.text_features(*texts)
        softword = np.zeros((batch, length), dtype=np.int64)
        rows = np.zeros((batch, length, len(POSITIONS), self.word_set_size), dtype=np.int64)
        weights = np.zeros(rows.shape, dtype=np.float32)
        for b, ids in enumerate(texts):
            n = len(ids)
            softword[b, :n], rows[b, :n], weights[b, :n] = self._rows[ids]
        return softword, rows, weights

    def text_features(self, *texts: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The softword ids, word-set rows and weights of token sequences (the last one's returned), computed
        together for those not among the last ``cache_size`` seen."""
        new = [ids for ids in dict.fromkeys(texts) if ids not in self._rows]
        if new:
            for ids, features in zip(new, self._compute(new)):
                self._rows[ids] = features
        for ids in texts:
            self._rows.move_to_end(ids)
        while len(self._rows) > max(self.cache_size, len(texts)):
            self._rows.popitem(last=False)
        return self._rows[texts[-1]]

    def clear_cache(self) -> None:
        """Forget the features kept of the last sequences (the automaton stays)."""
        self._rows.clear()

    def _compute(self, texts: list[tuple]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Features of several token sequences at once: their words matched one text at a time, the rest in
        array operations over all of them."""
        lengths = np.array([len(ids) for ids in texts])
        # (last position, word) pairs; an automaton without words cannot be searched
        found = [list(self.matcher.iter(id_string(ids))) if len(self.matcher) else [] for ids in texts]
        text_of = np.repeat(np.arange(len(texts)), [len(m) for m in found])
        last, words = np.fromiter(chain.from_iterable(chain.from_iterable(found)), np.int64).reshape(-1, 2).T
        ends = last + 1
        starts = ends - self._lengths[words]
        count, width = len(texts), int(lengths.max())
        shape = (count, width, len(POSITIONS), self.word_set_size)
        if self.softword:
            softword = self._softword(lengths, found)
        else:
            softword = np.zeros((count, width), dtype=np.int64)
        if self.word_sets:
            rows, weights = self._word_sets(lengths, text_of, starts, ends, words)
        else:
            rows, weights = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.float32)
        return [(softword[k, :n], rows[k, :n], weights[k, :n]) for k, n in enumerate(lengths)]

    def _softword(self, lengths: np.ndarray, found: list[list[tuple[int, int]]]) -> np.ndarray:
        """B/M/E/S of each token (ids 1-4) on jieba's route (``Tokenizer.calc``, no HMM) through the lexicon's words:
        from the last character back, the best sum of ``log f - log total`` over the words, ties to the longer word.
        As in jieba's DAG, a character is a step alone if it is a one-character word (its frequency) or if no longer
        word starts at it (frequency 1). A loop over each text's positions and words: a route is sequential, and a
        text has a few dozen of each."""
        out = np.zeros((len(lengths), int(lengths.max())), dtype=np.int64)
        log_total = self._log_total
        for k, (n, matches) in enumerate(zip(lengths.tolist(), found)):
            alone: list[float | None] = [None] * n  # the score of a one-character word
            longer: list[list[tuple[int, float]]] = [[] for _ in range(n)]  # start: (end, score) of longer words
            for last, word in matches:
                length, score = self._length_list[word], self._log_freqs[word] - log_total
                if length == 1:
                    alone[last] = score
                else:
                    longer[last + 1 - length].append((last + 1, score))
            route, best_end = [0.0] * (n + 1), [0] * n
            for i in range(n - 1, -1, -1):
                best, end = -math.inf, 0
                if alone[i] is not None or not longer[i]:
                    best, end = (-log_total if alone[i] is None else alone[i]) + route[i + 1], i + 1
                for e, score in longer[i]:
                    total = score + route[e]
                    if total > best or (total == best and e > end):
                        best, end = total, e
                route[i], best_end[i] = best, end
            row, i = out[k], 0
            while i < n:
                end = best_end[i]
                if end == i + 1:
                    row[i] = 4
                else:
                    row[i], row[i + 1 : end - 1], row[end - 1] = 1, 2, 3
                i = end
        return out

    def _word_sets(self, lengths, text_of, starts, ends, words) -> tuple[np.ndarray, np.ndarray]:
        """Each token's B/M/E/S word sets: the ``word_set_size`` most frequent words of each (ties: the order
        they were found in), as embedding rows, with the weights ``4 z(w) / Z`` (Z: the frequencies of the
        token's four sets); an empty set reads the no-word row with weight 1."""
        count, width, size = len(lengths), int(lengths.max()), self.word_set_size
        span = ends - starts
        match = np.repeat(np.arange(len(span)), span)
        offset = np.arange(len(match)) - np.repeat(np.cumsum(span) - span, span)
        t, position, word = text_of[match], starts[match] + offset, words[match]
        last = span[match] - 1
        kind = np.where(last == 0, 3, np.where(offset == 0, 0, np.where(offset == last, 2, 1)))
        freq = self._freqs[word]
        order = np.lexsort((-freq, kind, position, t))
        t, position, kind, word, freq = t[order], position[order], kind[order], word[order], freq[order]
        rank = _rank_in_groups((t * width + position) * len(POSITIONS) + kind)
        keep = rank < size
        t, position, kind, word, freq, rank = t[keep], position[keep], kind[keep], word[keep], freq[keep], rank[keep]
        total = np.zeros((count, width))
        np.add.at(total, (t, position), freq)
        rows = np.zeros((count, width, len(POSITIONS), size), dtype=np.int64)
        weights = np.zeros(rows.shape, dtype=np.float32)
        rows[t, position, kind, rank] = self._word_rows[word]
        weights[t, position, kind, rank] = 4.0 * freq / total[t, position]
        empty = (rows[..., 0] == 0) & (np.arange(width) < lengths[:, None])[:, :, None]
        rows[..., 0][empty], weights[..., 0][empty] = NO_WORD, 1.0
        return rows, weights


def bigram_rows(input_ids: np.ndarray, attention_mask: np.ndarray, keys: np.ndarray, vocab_size: int) -> np.ndarray:
    """``CharFeatures.bigram_index`` for arrays: each token's bigram row (itself and the next token)."""
    following = np.concatenate([input_ids[:, 1:], np.zeros_like(input_ids[:, :1])], axis=1)
    wanted = input_ids.astype(np.int64) * vocab_size + following
    where = np.searchsorted(keys, wanted).clip(max=len(keys) - 1)
    return np.where(keys[where] == wanted, where + FIRST_BIGRAM_ROW, UNKNOWN_BIGRAM) * attention_mask


class CharFeaturesArrays:
    """``CharFeatures``' output for arrays, from its tables and lexicon as ``export_onnx`` saves them
    (``features.npz``): the input the encoder graph takes beside the characters' ids."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.tables = {name: arrays[name] for name in ("bigram", "softword", "word") if name in arrays}
        self.vocab_size = int(arrays["vocab_size"])
        self.bigram_keys = arrays.get("bigram_keys")
        self.projection = (
            (arrays["projection_weight"].T, arrays["projection_bias"]) if "projection_weight" in arrays else None
        )
        self.lexicon = None
        if "word_ids" in arrays:
            taught = [tuple(int(i) for i in row if i) for row in arrays["taught_words"]]
            self.lexicon = LexiconFeatures(
                arrays["word_ids"], arrays["word_freqs"], arrays["word_rows"], int(arrays["word_set_size"]), taught,
                int(arrays["first_taught_row"]), softword="softword" in self.tables, word_sets="word" in self.tables,
            )  # fmt: skip

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        parts = []
        if "bigram" in self.tables:
            parts.append(self.tables["bigram"][bigram_rows(input_ids, attention_mask, self.bigram_keys,
                                                           self.vocab_size)])  # fmt: skip
        if self.lexicon is not None:
            softword, rows, weights = self.lexicon.batch(input_ids, attention_mask.sum(axis=1).tolist())
            if "softword" in self.tables:
                parts.append(self.tables["softword"][softword])
            if "word" in self.tables:  # eq. 10 per set, eq. 11 side by side
                parts.append(pooled_sets(self.tables["word"], rows, weights))
        features = np.concatenate(parts, axis=-1).astype(np.float32)
        if self.projection is not None:
            weight, bias = self.projection
            features = features @ weight + bias
        return features


def pooled_sets(table: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[batch, length, 4 * d]``: each set's rows of ``table`` summed with their weights (``embedding_bag`` with
    per-sample weights). Only the filled places are read: most of a set's ``word_set_size`` places are empty."""
    batch, length, sets, size = rows.shape
    filled = np.flatnonzero(weights)  # in order, so each set's places are consecutive
    bag = filled // size
    first = np.r_[True, bag[1:] != bag[:-1]] if len(bag) else np.zeros(0, dtype=bool)
    out = np.zeros((batch * length * sets, table.shape[1]), dtype=np.float32)
    if len(filled):
        terms = table[rows.reshape(-1)[filled]] * weights.reshape(-1)[filled, None]
        out[bag[first]] = np.add.reduceat(terms, np.flatnonzero(first), axis=0)
    return out.reshape(batch, length, sets * table.shape[1])


class _WordIndex:
    """The automaton's words by their token ids: ``ids in index`` and ``index[ids]``, the word's index."""

    def __init__(self, matcher):
        self.matcher = matcher

    def __contains__(self, ids: tuple[int, ...]) -> bool:
        return self.matcher.exists(id_string(ids))

    def __getitem__(self, ids: tuple[int, ...]) -> int:
        return self.matcher.get(id_string(ids))


def suggested_frequency(word: tuple[int, ...], index: Mapping[tuple[int, ...], int], freqs: np.ndarray) -> float:
    """The frequency at which ``word`` is one word of the segmentation rather than the best route through its
    parts (jieba's ``suggest_freq``): the corpus total times the product of the parts' shares, plus one; a part
    that is no lexicon word is a character of frequency 1."""
    n, log_total = len(word), math.log(freqs.sum())
    if n == 1:
        return 1.0
    best = [0.0] * (n + 1)  # best[i]: the best log share of word[i:] cut into parts
    for i in range(n - 1, -1, -1):
        options = [best[i + 1] + (math.log(freqs[index[word[i : i + 1]]]) if word[i : i + 1] in index else 0.0)]
        for j in range(i + 2, n + 1 - (i == 0)):
            if word[i:j] in index:
                options.append(best[j] + math.log(freqs[index[word[i:j]]]))
        best[i] = max(options) - log_total
    return float(math.floor(math.exp(best[0] + log_total)) + 1)


def _rank_in_groups(keys: np.ndarray) -> np.ndarray:
    """For sorted ``keys``, each item's place among the items of its key (0, 1, ...)."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    first = np.r_[True, keys[1:] != keys[:-1]]
    starts = np.flatnonzero(first)
    return np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
