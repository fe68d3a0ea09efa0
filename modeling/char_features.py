"""Input features of the character BiLSTM, computed from the characters' ids inside the model.

* **char bigrams**: each character with its right neighbour, looked up in a vocabulary of the training
  corpus's bigrams (beside padding, one row for every bigram not in the vocabulary);
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

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .char_features_numpy import (  # noqa: F401  (the features' constants and helpers, defined once there)
    FIRST_BIGRAM_ROW,
    FIRST_WORD_ROW,
    NO_WORD,
    OTHER_WORD,
    POSITIONS,
    UNKNOWN_BIGRAM,
    LexiconFeatures,
    id_string,
    id_strings,
    padded_ids,
    suggested_frequency,
)


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
        feature_projection_size (`int`, defaults to 0):
            Width the concatenated features are projected to (one linear layer) before they join the character
            embedding; 0: they join it as they are. The BiLSTM's input product grows with its input width and is
            the larger part of its time, so a narrower input tags faster.
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
    feature_projection_size: int = 0


class CharFeatures(nn.Module):
    """Bigram, softword and word-set embeddings of each token, concatenated (``[batch, length, output_size]``), and
    projected to ``config.feature_projection_size`` if it is set."""

    def __init__(self, config, cache_size: int = 4096):
        super().__init__()
        self.vocab_size = config.vocab_size
        self.word_set_size = config.word_set_size
        self.bigram_embeddings = self.softword_embeddings = self.word_embeddings = None
        self.output_size = 0
        if config.bigram_vocab_size:
            # sorted keys first * vocab_size + second; an embedding row is the key's position + FIRST_BIGRAM_ROW
            self.register_buffer("bigram_keys", torch.zeros(config.bigram_vocab_size, dtype=torch.long))
            self.bigram_embeddings = nn.Embedding(
                config.bigram_vocab_size + FIRST_BIGRAM_ROW, config.bigram_embedding_size, 0
            )
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
        self.projection = None
        if config.feature_projection_size:
            self.projection = nn.Linear(self.output_size, config.feature_projection_size)
            self.output_size = config.feature_projection_size
        self.cache_size = cache_size
        self._taught: tuple[list[tuple[int, ...]], torch.Tensor | None] = ([], None)
        self.changed()

    @property
    def reads_lexicon(self) -> bool:
        """Whether any feature (softword, word sets) reads the lexicon."""
        return self.softword_embeddings is not None or self.word_embeddings is not None

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Each table N(0, 1/d), as wide a spread as a char vector's; the projection keeps that spread."""
        for table in self.embedding_tables():
            nn.init.normal_(table.weight, 0.0, table.embedding_dim**-0.5)
        if self.projection is not None:
            nn.init.normal_(self.projection.weight, 0.0, self.projection.in_features**-0.5)
            nn.init.zeros_(self.projection.bias)

    def embedding_tables(self) -> list[nn.Embedding]:
        """The bigram, softword and word embeddings this module has."""
        tables = (self.bigram_embeddings, self.softword_embeddings, self.word_embeddings)
        return [t for t in tables if t is not None]

    def changed(self) -> None:
        """The lexicon buffers or the taught words were written: build the lexicon's automaton and the per-text
        features again when needed."""
        self._lexicon: LexiconFeatures | None = None

    def clear_cache(self) -> None:
        """Forget the lexicon features kept of the last texts (:meth:`.LexiconFeatures.clear_cache`)."""
        if self._lexicon is not None:
            self._lexicon.clear_cache()

    @property
    def lexicon(self) -> LexiconFeatures:
        """The lexicon buffers and the taught words, matched in NumPy (:class:`.char_features_numpy.
        LexiconFeatures`), built on first use."""
        if self._lexicon is None:
            table_rows = self.word_embeddings.num_embeddings if self.word_embeddings is not None else 0
            self._lexicon = LexiconFeatures(
                self.word_ids.cpu().numpy(), self.word_freqs.double().cpu().numpy(), self.word_rows.cpu().numpy(),
                self.word_set_size, self.taught_words, table_rows, self.cache_size,
                softword=self.softword_embeddings is not None, word_sets=self.word_embeddings is not None,
            )  # fmt: skip
        return self._lexicon

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
        self.word_ids.copy_(torch.from_numpy(padded_ids(words, self.word_ids.shape[1])))
        self.word_freqs.copy_(torch.as_tensor(list(freqs), dtype=torch.float32))
        self.word_rows.copy_(torch.as_tensor(list(rows), dtype=torch.int32))
        self.changed()

    @torch.no_grad()
    def copy_vocabularies(self, other: "CharFeatures") -> None:
        """The bigram vocabulary and the lexicon of ``other``, a module built from the same config (a new
        entity-type classifier reads its tagger's)."""
        for name in ("bigram_keys", "word_ids", "word_freqs", "word_rows"):
            if hasattr(self, name):
                getattr(self, name).copy_(getattr(other, name))
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
        return self.lexicon.lexicon_rows(words)

    @torch.no_grad()
    def init_from_char_embeddings(self, char_weight: torch.Tensor) -> dict:
        """Initialise the bigram and word embeddings from the characters' (``char_weight``, the char table after its
        pretrained vectors are copied in): a bigram or word gets the mean of its characters' vectors, projected
        to the table's width by the char table's principal components (:meth:`set_embedding_rows`). Rows of no
        bigram or word (padding, unknown, no word, another word) keep theirs. Counts."""
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
            out[name] = self.set_embedding_rows(
                name, rows, PCA(n_components=table.embedding_dim).fit(chars).transform(mean)
            )
        return out

    @torch.no_grad()
    def set_embedding_rows(self, table: str, rows: Sequence[int], vectors: np.ndarray) -> int:
        """Copy ``vectors`` (``[len(rows), d]``) into these rows of the ``"bigrams"`` or ``"words"`` table, scaled
        to the standard deviation of the rows they replace, so that the input keeps the spread the BiLSTM was
        initialised for. How many rows."""
        embeddings = {"bigrams": self.bigram_embeddings, "words": self.word_embeddings}[table]
        rows = torch.as_tensor(list(rows), dtype=torch.long)
        vectors = np.asarray(vectors, dtype=np.float64)
        vectors = vectors * float(embeddings.weight[rows].std()) / max(float(vectors.std(ddof=1)), 1e-12)
        embeddings.weight[rows] = torch.as_tensor(vectors, dtype=embeddings.weight.dtype)
        return len(rows)

    def words_of(self, input_ids: Sequence[Sequence[int]], batch_size: int = 512) -> list[list[int]]:
        """Each token sequence cut into words along the lexicon's softword route: each word's row of the word
        table, or ``-id`` for a character that is no word with a row of its own."""
        lexicon = LexiconFeatures(
            self.word_ids.cpu().numpy(), self.word_freqs.double().cpu().numpy(), self.word_rows.cpu().numpy(),
            self.word_set_size, cache_size=batch_size, softword=True, word_sets=False,
        )  # fmt: skip
        word_starts = (1 + POSITIONS.index("B"), 1 + POSITIONS.index("S"))
        out = []
        for start in range(0, len(input_ids), batch_size):
            texts = [list(ids) for ids in input_ids[start : start + batch_size]]
            width = max(map(len, texts))
            padded = np.array([ids + [0] * (width - len(ids)) for ids in texts], dtype=np.int64)
            softword = lexicon.batch(padded, [len(ids) for ids in texts])[0]
            for ids, positions in zip(texts, softword.tolist()):
                starts = [i for i, p in enumerate(positions[: len(ids)]) if p in word_starts] + [len(ids)]
                words = [ids[a:b] for a, b in zip(starts, starts[1:])]
                rows = lexicon.lexicon_rows(words)
                out.append([row if row >= FIRST_WORD_ROW else -word[0] for word, row in zip(words, rows)])
        return out

    def _bigram_members(self) -> tuple[list[int], list[list[int]]]:
        keys = self.bigram_keys.tolist()
        return [k + FIRST_BIGRAM_ROW for k in range(len(keys))], [
            [key // self.vocab_size, key % self.vocab_size] for key in keys
        ]

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
        features = torch.cat(parts, dim=-1)
        return self.projection(features) if self.projection is not None else features

    def bigram_index(self, input_ids: torch.LongTensor, mask: torch.Tensor) -> torch.LongTensor:
        """Each token's bigram row: itself and the next token (``[SEP]`` after the last character)."""
        following = torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], dim=1)
        keys = input_ids * self.vocab_size + following
        where = torch.searchsorted(self.bigram_keys, keys).clamp(max=len(self.bigram_keys) - 1)
        rows = torch.where(
            self.bigram_keys[where] == keys, where + FIRST_BIGRAM_ROW, torch.full_like(where, UNKNOWN_BIGRAM)
        )
        return rows * mask

    def lexicon_features(self, input_ids: torch.LongTensor, mask: torch.Tensor):
        """Softword ids ``[batch, length]``, word-set rows and weights ``[batch, length, 4, word_set_size]``."""
        arrays = self.lexicon.batch(input_ids.cpu().numpy(), mask.sum(1).tolist())
        return tuple(torch.from_numpy(x).to(input_ids.device) for x in arrays)

    def text_features(self, *texts: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``LexiconFeatures.text_features``: the softword ids, word-set rows and weights of token sequences (the
        last one's returned)."""
        return self.lexicon.text_features(*texts)
