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
from dataclasses import dataclass
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


@dataclass
class CharFeaturesConfig:
    r"""
    The fields of both models' configs that choose the character BiLSTM's input features (:class:`CharFeatures`).

    Args:
        bigram_vocab_size (`int`, defaults to 0):
            BiLSTM encoder: char bigrams in the bigram vocabulary (`char_features.CharFeatures`); 0: no bigram feature.
        bigram_embedding_size (`int`, defaults to 50):
            Size of a bigram's embedding.
        lexicon_size, lexicon_word_length (`int`, default to 0):
            Words in the lexicon the softword and word-set features read, and the longest in tokens (0: none).
        use_softword (`bool`, defaults to `False`):
            BiLSTM encoder: each character's position (B/M/E/S) in its word under the lexicon's segmentation.
        softword_embedding_size (`int`, defaults to 20):
            Size of a softword position's embedding.
        use_word_sets (`bool`, defaults to `False`):
            BiLSTM encoder: the SoftLexicon word sets of each character (B/M/E/S), pooled by word frequency.
        word_vocab_size (`int`, defaults to 0):
            Rows of the word embeddings (padding, no word, another lexicon word, then the training text's words).
        word_embedding_size (`int`, defaults to 50):
            Size of a word's embedding; the four pooled sets add four times this to each character.
        word_set_size (`int`, defaults to 8):
            The most frequent words of a set that are pooled.
    """

    bigram_vocab_size: int = 0
    bigram_embedding_size: int = 50
    lexicon_size: int = 0
    lexicon_word_length: int = 0
    use_softword: bool = False
    softword_embedding_size: int = 20
    use_word_sets: bool = False
    word_vocab_size: int = 0
    word_embedding_size: int = 50
    word_set_size: int = 8


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
        self._taught: tuple[list[tuple[int, ...]], torch.Tensor | None] = ([], None)
        self.changed()

    @property
    def reads_lexicon(self) -> bool:
        """Whether any feature (softword, word sets) reads the lexicon."""
        return self.softword_embeddings is not None or self.word_embeddings is not None

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

    @torch.no_grad()
    def set_taught_words(self, words: Sequence[Sequence[int]], vectors: torch.Tensor | None = None) -> None:
        """Words taught after training (token ids), read as a user dictionary is read by jieba: each is a lexicon
        word with at least the frequency that makes it one word of the segmentation (:func:`suggested_frequency`),
        and a word that is not in the lexicon reads ``vectors[k]`` in the word sets (it has no embedding row, as
        the training text never showed it). Not saved with the buffers: the model sets them from the entities it
        keeps (``MemoryNetForTokenClassification``'s taught entities)."""
        self._taught = ([tuple(int(i) for i in w) for w in words], None if vectors is None else vectors.detach())
        self.changed()

    @property
    def taught_words(self) -> list[tuple[int, ...]]:
        """The words of :meth:`set_taught_words`."""
        return self._taught[0]

    @property
    def taught_vectors(self) -> torch.Tensor | None:
        """The word-set vectors of :meth:`set_taught_words`."""
        return self._taught[1]

    def lexicon_rows(self, words: Sequence[Sequence[int]]) -> list[int]:
        """The word-embedding row of each of these token sequences that is a lexicon word (0 where none)."""
        if self._matcher is None:
            self._matcher = self._build_matcher()
        found = [self._lexicon_index.get(tuple(w)) for w in words]
        return [int(self._word_rows[k]) if k is not None else 0 for k in found]

    @torch.no_grad()
    def init_from_char_embeddings(self, char_weight: torch.Tensor) -> dict:
        """Initialise the bigram and word embeddings from the characters' (``char_weight``, the char table after its
        pretrained vectors are copied in): a bigram or word gets the mean of its characters' vectors, projected
        to the table's width by the char table's principal components and scaled to the standard deviation of the
        rows it replaces. Rows of no bigram or word (padding, unknown, no word, another word) keep theirs. Counts."""
        from sklearn.decomposition import PCA

        chars = char_weight.detach().float().cpu().numpy()
        out = {}
        for name, table, members in (
            ("bigrams", self.bigram_embeddings, self._bigram_members),
            ("words", self.word_embeddings, self._word_members),
        ):
            if table is None:
                continue
            rows, tokens = members()
            if not len(rows):
                continue
            mean = np.stack([chars[t].mean(axis=0) for t in tokens])
            projected = PCA(n_components=table.embedding_dim).fit(chars).transform(mean)
            rows = torch.as_tensor(rows)
            projected *= float(table.weight[rows].std()) / max(float(projected.std(ddof=1)), 1e-12)
            table.weight[rows] = torch.as_tensor(projected, dtype=table.weight.dtype)
            out[name] = len(rows)
        return out

    def _bigram_members(self) -> tuple[list[int], list[list[int]]]:
        keys = self.bigram_keys.tolist()
        return [k + 2 for k in range(len(keys))], [[key // self.vocab_size, key % self.vocab_size] for key in keys]

    def _word_members(self) -> tuple[list[int], list[list[int]]]:
        """Each word row of a word the training text showed, with that word's token ids."""
        members: dict[int, list[int]] = {}
        for ids, row in zip(self.word_ids.tolist(), self.word_rows.tolist()):
            if row >= FIRST_WORD_ROW:
                members.setdefault(row, [i for i in ids if i])
        rows = sorted(members)
        return rows, [members[r] for r in rows]

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
                # eq. 10 per set, as weighted bags of rows (no [batch, length, 4, set size, d] tensor in between)
                bags, bag_weights = rows.flatten(0, 2), weights.flatten(0, 2)
                table = self.word_embeddings.weight
                taught = self.taught_vectors
                if taught is not None and len(taught):  # the taught words' rows follow the table's
                    table = torch.cat([table, taught.to(table)])
                pooled = nn.functional.embedding_bag(bags, table, mode="sum", per_sample_weights=bag_weights)
                parts.append(pooled.view(*rows.shape[:2], -1))  # eq. 11: the four sets side by side
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
        texts = [tuple(ids[:n]) for ids, n in zip(input_ids.tolist(), mask.sum(1).tolist())]
        self.text_features(*texts)
        softword = np.zeros((batch, length), dtype=np.int64)
        rows = np.zeros((batch, length, len(POSITIONS), self.word_set_size), dtype=np.int64)
        weights = np.zeros(rows.shape, dtype=np.float32)
        for b, ids in enumerate(texts):
            n = len(ids)
            softword[b, :n], rows[b, :n], weights[b, :n] = self._rows[ids]
        device = input_ids.device
        return tuple(torch.from_numpy(x).to(device) for x in (softword, rows, weights))

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

    def _compute(self, texts: list[tuple]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Features of several token sequences at once: their words matched one text at a time, the rest in
        array operations over all of them."""
        lengths = np.array([len(ids) for ids in texts])
        found = [self.matches(ids) for ids in texts]
        text_of = np.repeat(np.arange(len(texts)), [len(m) for m in found])
        matched = np.array([m for ms in found for m in ms], dtype=np.int64).reshape(-1, 3)
        starts, ends, words = matched.T
        softword = self._softword(lengths, text_of, starts, ends, words)
        rows, weights = self._word_sets(lengths, text_of, starts, ends, words)
        return [(softword[k, :n], rows[k, :n], weights[k, :n]) for k, n in enumerate(lengths)]

    def matches(self, ids: Sequence[int]) -> list[tuple[int, int, int]]:
        """Every lexicon word in the sequence: ``(start, end, word index)``, by end then length."""
        if self._matcher is None:
            self._matcher = self._build_matcher()
        return [(end + 1 - length, end + 1, word) for end, (word, length) in self._matcher.iter(id_string(ids))]

    def _build_matcher(self):
        import ahocorasick

        lengths = (self.word_ids > 0).sum(1).tolist()
        index = {tuple(ids[:length]): word for word, (ids, length) in enumerate(zip(self.word_ids.tolist(), lengths))}
        self._lexicon_index = dict(index)
        freqs = self.word_freqs.double().cpu().numpy()
        rows = self.word_rows.long().cpu().numpy()
        taught_freqs, taught_rows = [], []
        table_rows = self.word_embeddings.num_embeddings if self.word_embeddings is not None else 0
        for k, ids in enumerate(self.taught_words):
            freq = suggested_frequency(ids, index, np.concatenate([freqs, taught_freqs]))
            if ids in index and index[ids] < len(freqs):
                freqs[index[ids]] = max(freqs[index[ids]], freq)
            elif ids in index:  # taught twice (two entries that read alike)
                taught_freqs[index[ids] - len(freqs)] = max(taught_freqs[index[ids] - len(freqs)], freq)
            else:
                index[ids] = len(freqs) + len(taught_freqs)
                taught_freqs.append(freq)
                taught_rows.append(table_rows + k)
        matcher = ahocorasick.Automaton()
        for ids, word in index.items():
            matcher.add_word(id_string(ids), (word, len(ids)))
        matcher.make_automaton()
        self._freqs = np.concatenate([freqs, taught_freqs])
        self._log_freqs, self._log_total = np.log(self._freqs), math.log(self._freqs.sum())
        self._word_rows = np.concatenate([rows, np.asarray(taught_rows, dtype=np.int64)])
        return matcher

    def _softword(self, lengths, text_of, starts, ends, words) -> np.ndarray:
        """B/M/E/S of each token (ids 1-4) on the best route through the lexicon's words, as jieba's ``calc``
        finds it: from the last character back, the longest of the best-scoring words (a character in no word
        is one of frequency 1), each word scoring ``log f - log total``."""
        count, width = len(lengths), int(lengths.max())
        single = np.zeros((count, width)) - self._log_total  # a character alone: f = 1, or its own frequency
        is_single = ends - starts == 1
        single[text_of[is_single], starts[is_single]] = self._log_freqs[words[is_single]] - self._log_total
        longer = ~is_single
        order = np.lexsort((ends[longer], starts[longer], text_of[longer]))
        t, a, e = text_of[longer][order], starts[longer][order], ends[longer][order]
        score = self._log_freqs[words[longer][order]] - self._log_total
        slot = _rank_in_groups(t * width + a)
        slots = 1 + (int(slot.max()) + 1 if len(slot) else 0)
        cand_end = np.zeros((count, width, slots), dtype=np.int64)
        cand_score = np.full((count, width, slots), -np.inf)
        cand_end[:, :, 0] = np.arange(1, width + 1)
        cand_score[:, :, 0] = single
        cand_end[t, a, 1 + slot], cand_score[t, a, 1 + slot] = e, score
        route = np.zeros((count, width + 1))
        best_end = np.zeros((count, width), dtype=np.int64)
        for i in range(width - 1, -1, -1):
            total = cand_score[:, i] + np.take_along_axis(route, cand_end[:, i], axis=1)
            best = total.max(axis=1)
            best_end[:, i] = np.where(total == best[:, None], cand_end[:, i], -1).max(axis=1)
            route[:, i] = np.where(i < lengths, best, 0.0)
        is_start = np.zeros((count, width + 1), dtype=bool)
        current = np.zeros(count, dtype=np.int64)
        active = current < lengths
        while active.any():
            is_start[np.flatnonzero(active), current[active]] = True
            current[active] = best_end[active, current[active]]
            active = current < lengths
        ends_here = is_start[:, 1:] | (np.arange(width) == (lengths - 1)[:, None])
        begins = is_start[:, :width]
        out = np.select([begins & ends_here, begins, ends_here], [4, 1, 3], default=2)
        return np.where(np.arange(width) < lengths[:, None], out, 0)

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


def suggested_frequency(word: tuple[int, ...], index: dict[tuple[int, ...], int], freqs: np.ndarray) -> float:
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
