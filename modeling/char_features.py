"""Input features of the character BiLSTM, computed from the characters' ids inside the model.

* **char bigrams**: each character with its right neighbour, looked up in a vocabulary of the training
  corpus's bigrams (id ``0`` padding, ``1`` a bigram not in the vocabulary);
* **softword**: each character's position (B, M, E, S) in its word under a segmentation by the model's
  lexicon, found as jieba finds it (the DAG of the dictionary words in the text, then the route of the highest
  sum of log frequencies; a character in no word is a word of frequency 1);
* **word sets** (SoftLexicon, Ma et al. 2020, eqs. 9-11): for each character, the lexicon words that Begin,
  continue (Middle), End at it or are it (Single), each set pooled by word frequency, ``4 z(w) / Z``.

The bigram vocabulary and the lexicon (its words as token ids, their frequencies and embedding rows) are
buffers of :class:`CharFeatures`, so a saved folder tags the same way whatever jieba or dictionary is installed;
the words are found with an Aho-Corasick automaton (``pyahocorasick``) built when first needed.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from torch import nn

POSITIONS = ("B", "M", "E", "S")  # softword ids 1-4 and the four word sets, in this order; 0 is padding
NO_WORD, OTHER_WORD = 1, 2  # word-embedding rows: an empty set, a lexicon word the training text never showed
FIRST_WORD_ROW = 3  # rows of the words the training text showed start here (0 is padding)
_OFFSET = 0x10000  # token id i is the character chr(_OFFSET + i) of the automaton's keys


def id_string(ids: Sequence[int]) -> str:
    """Token ids as a string the automaton matches (one character per id)."""
    return "".join(chr(_OFFSET + int(i)) for i in ids)


class CharFeatures(nn.Module):
    """Bigram, softword and word-set embeddings of each token, concatenated (``[batch, length, output_size]``)."""

    def __init__(self, config, cache_size: int = 4096):
        super().__init__()
        self.vocab_size = config.vocab_size
        self.word_set_size = config.word_set_size
        self.bigram_embeddings = self.softword_embeddings = self.word_embeddings = None
        self.output_size = 0
        if config.bigram_vocab_size:
            # sorted keys first * vocab_size + second; an embedding row is the key's position + 2
            self.register_buffer("bigram_keys", torch.zeros(config.bigram_vocab_size, dtype=torch.long))
            self.bigram_embeddings = nn.Embedding(config.bigram_vocab_size + 2, config.bigram_embedding_size, 0)
            self.output_size += config.bigram_embedding_size
        if config.lexicon_size:
            self.register_buffer(
                "word_ids", torch.zeros(config.lexicon_size, config.lexicon_word_length, dtype=torch.int32)
            )  # each word's token ids, 0-padded
            self.register_buffer("word_freqs", torch.ones(config.lexicon_size))
            self.register_buffer("word_rows", torch.full((config.lexicon_size,), OTHER_WORD, dtype=torch.int32))
        if config.use_softword:
            self.softword_embeddings = nn.Embedding(len(POSITIONS) + 1, config.softword_embedding_size, 0)
            self.output_size += config.softword_embedding_size
        if config.use_word_sets:
            self.word_embeddings = nn.Embedding(config.word_vocab_size, config.word_embedding_size, 0)
            self.output_size += len(POSITIONS) * config.word_embedding_size
        self.cache_size = cache_size
        self.changed()

    def embedding_tables(self) -> list[nn.Embedding]:
        """The bigram, softword and word embeddings this module has."""
        tables = (self.bigram_embeddings, self.softword_embeddings, self.word_embeddings)
        return [t for t in tables if t is not None]

    def changed(self) -> None:
        """The lexicon buffers were written: build the automaton and the per-text features again when needed."""
        self._matcher = None
        self._rows: OrderedDict[tuple, tuple] = OrderedDict()

    def _load_from_state_dict(self, *args, **kwargs):
        self.changed()
        return super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def set_bigrams(self, keys: Sequence[int]) -> None:
        """The bigram vocabulary: keys ``first_id * vocab_size + second_id`` (sorted here)."""
        keys = torch.as_tensor(sorted(set(int(k) for k in keys)), dtype=torch.long)
        if len(keys) != len(self.bigram_keys):
            raise ValueError(f"{len(keys)} bigrams for a table of {len(self.bigram_keys)} (config.bigram_vocab_size)")
        self.bigram_keys.copy_(keys)

    @torch.no_grad()
    def set_lexicon(self, words: Sequence[Sequence[int]], freqs: Sequence[float], rows: Sequence[int]) -> None:
        """The lexicon: each word's token ids, its frequency (the weight ``z(w)``) and its embedding row."""
        if not len(words) == len(freqs) == len(rows) == len(self.word_ids):
            raise ValueError(f"a lexicon of {len(self.word_ids)} words got {len(words)} / {len(freqs)} / {len(rows)}")
        self.word_ids.zero_()
        for k, ids in enumerate(words):
            self.word_ids[k, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.int32)
        self.word_freqs.copy_(torch.as_tensor(list(freqs), dtype=torch.float32))
        self.word_rows.copy_(torch.as_tensor(list(rows), dtype=torch.int32))
        self.changed()

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        parts = []
        if self.bigram_embeddings is not None:
            parts.append(self.bigram_embeddings(self.bigram_index(input_ids, mask)))
        if self.softword_embeddings is not None or self.word_embeddings is not None:
            softword, rows, weights = self.lexicon_features(input_ids, mask)
            if self.softword_embeddings is not None:
                parts.append(self.softword_embeddings(softword))
            if self.word_embeddings is not None:
                pooled = (self.word_embeddings(rows) * weights.unsqueeze(-1)).sum(3)  # eq. 10, per set
                parts.append(pooled.flatten(2))  # eq. 11: the four sets side by side
        return torch.cat(parts, dim=-1)

    def bigram_index(self, input_ids: torch.LongTensor, mask: torch.Tensor) -> torch.LongTensor:
        """Each token's bigram row: itself and the next token (``[SEP]`` after the last character)."""
        following = torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], dim=1)
        keys = input_ids * self.vocab_size + following
        where = torch.searchsorted(self.bigram_keys, keys).clamp(max=len(self.bigram_keys) - 1)
        rows = torch.where(self.bigram_keys[where] == keys, where + 2, torch.ones_like(where))
        return rows * mask

    def lexicon_features(self, input_ids: torch.LongTensor, mask: torch.Tensor):
        """Softword ids ``[batch, length]``, word-set rows and weights ``[batch, length, 4, word_set_size]``."""
        batch, length = input_ids.shape
        softword = np.zeros((batch, length), dtype=np.int64)
        rows = np.zeros((batch, length, len(POSITIONS), self.word_set_size), dtype=np.int64)
        weights = np.zeros(rows.shape, dtype=np.float32)
        for b, (ids, n) in enumerate(zip(input_ids.tolist(), mask.sum(1).tolist())):
            s, r, w = self.text_features(tuple(ids[:n]))
            softword[b, :n], rows[b, :n], weights[b, :n] = s, r, w
        device = input_ids.device
        return (
            torch.from_numpy(softword).to(device),
            torch.from_numpy(rows).to(device),
            torch.from_numpy(weights).to(device),
        )

    def text_features(self, ids: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The softword ids, word-set rows and weights of one token sequence (kept for the last ``cache_size``)."""
        cached = self._rows.get(ids)
        if cached is not None:
            self._rows.move_to_end(ids)
            return cached
        matches = self.matches(ids)
        out = (self._softword(len(ids), matches), *self._word_sets(len(ids), matches))
        self._rows[ids] = out
        if len(self._rows) > self.cache_size:
            self._rows.popitem(last=False)
        return out

    def matches(self, ids: Sequence[int]) -> list[tuple[int, int, int]]:
        """Every lexicon word in the sequence: ``(start, end, word index)``, by end then length."""
        if self._matcher is None:
            self._matcher = self._build_matcher()
        return [(end + 1 - length, end + 1, word) for end, (word, length) in self._matcher.iter(id_string(ids))]

    def _build_matcher(self):
        import ahocorasick

        matcher = ahocorasick.Automaton()
        lengths = (self.word_ids > 0).sum(1).tolist()
        for word, (ids, length) in enumerate(zip(self.word_ids.tolist(), lengths)):
            matcher.add_word(id_string(ids[:length]), (word, length))
        matcher.make_automaton()
        freqs = self.word_freqs.tolist()
        self._log_freqs = [math.log(f) for f in freqs]
        self._log_total = math.log(sum(freqs))
        self._freqs, self._word_rows = freqs, self.word_rows.tolist()
        return matcher

    def _softword(self, n: int, matches: list[tuple[int, int, int]]) -> np.ndarray:
        """B/M/E/S of each token (ids 1-4) in the best route through the lexicon's words (jieba's ``calc``)."""
        starting: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for start, end, word in matches:
            starting[start].append((end, word))
        route = [(0.0, n)] * (n + 1)
        for i in range(n - 1, -1, -1):
            single = next((w for e, w in starting[i] if e == i + 1), None)
            best = (
                (self._log_freqs[single] if single is not None else 0.0) - self._log_total + route[i + 1][0],
                i + 1,
            )
            for end, word in starting[i]:
                best = max(best, (self._log_freqs[word] - self._log_total + route[end][0], end))
            route[i] = best
        out = np.zeros(n, dtype=np.int64)
        i = 0
        while i < n:
            end = route[i][1]
            if end - i == 1:
                out[i] = 4
            else:
                out[i], out[i + 1 : end - 1], out[end - 1] = 1, 2, 3
            i = end
        return out

    def _word_sets(self, n: int, matches: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Each token's B/M/E/S word sets: the ``word_set_size`` most frequent words of each, as embedding rows,
        with the weights ``4 z(w) / Z`` (Z: the frequencies of the token's four sets); an empty set reads the
        no-word row with weight 1."""
        sets: list[list[list[int]]] = [[[] for _ in POSITIONS] for _ in range(n)]
        for start, end, word in matches:
            if end - start == 1:
                sets[start][3].append(word)
            else:
                sets[start][0].append(word)
                sets[end - 1][2].append(word)
                for k in range(start + 1, end - 1):
                    sets[k][1].append(word)
        rows = np.zeros((n, len(POSITIONS), self.word_set_size), dtype=np.int64)
        weights = np.zeros(rows.shape, dtype=np.float32)
        for i, token_sets in enumerate(sets):
            kept = [sorted(words, key=lambda w: -self._freqs[w])[: self.word_set_size] for words in token_sets]
            total = sum(self._freqs[w] for words in kept for w in words)
            for j, words in enumerate(kept):
                if not words:
                    rows[i, j, 0], weights[i, j, 0] = NO_WORD, 1.0
                for k, w in enumerate(words):
                    rows[i, j, k], weights[i, j, k] = self._word_rows[w], 4.0 * self._freqs[w] / total
        return rows, weights
