"""Memory retrieval: the only place memory sentences are chosen (memory paper, section 2.1).

For every query sentence, ``n`` memory sentences are picked from a *bank* of labelled training
sentences by one of these methods:

``pos_edit``
    edit distance between the POS-tag sequences (jieba) of query and bank sentence, nearest first.
``category`` (the paper's method)
    with the entity-type set ``Ys`` a multi-label classifier predicts for the query and the gold type
    set ``Yt`` of each bank sentence: ``|Ys - Yt|`` ascending (memories contain the query's types),
    then ``|Yt|`` ascending (and as few other types as possible), then POS edit distance, then bank
    index, so the order is deterministic.
``gold_category``
    the same ranking with the query's gold types: an oracle for analysis.
``lexical``
    TF-IDF cosine over character 1-3-grams (scikit-learn), the most similar first, with some
    diversity: from the best ``4n`` candidates (one per distinct text), maximal marginal relevance
    picks each next memory by its similarity to the query minus its similarity to the memories
    already picked. Candidates are the bank texts that share a 2- or 3-gram with the query (see
    ``BankIndex``), so a query's cost does not grow with the bank's common characters.
``entity``
    the query's substrings that are entity strings of the bank (an Aho-Corasick automaton,
    ``pyahocorasick``): memories are picked greedily to cover the most query characters that lie
    inside such matches, a bank sentence covering the characters of the entity strings it labels;
    ties, and the places left once nothing more is covered, go by ``lexical``. A memory that labels
    the query's own string carries that label to exactly those characters (eqs. 3-6).
``hybrid``
    the first ``ceil(n/2)`` memories by ``entity`` (those that cover something), the rest by ``category``.
``random``
    a seeded control.

A query never retrieves itself (``exclude``) nor a bank sentence with an identical text: that
would hand the model its own labels.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist
from threadpoolctl import ThreadpoolController

METHODS = ("entity", "lexical", "category", "hybrid", "pos_edit", "gold_category", "random")
CLASSIFIER_METHODS = ("category", "hybrid")  # the methods whose query types an entity-type classifier predicts
TYPE_METHODS = ("category", "gold_category", "hybrid")  # the methods that read the query's entity types
INDEX_METHODS = ("lexical", "entity", "hybrid")  # the methods that read a BankIndex
POS_METHODS = ("pos_edit", "category", "gold_category", "hybrid")  # the methods that read POS strings
# part of the cache key: bump when the ranking changes, so cached retrievals of the old ranking are not reused
RANKING_VERSION = 6

# jieba's POS tag set; each tag is written as one character so that tag sequences compare as strings
POS_TAGS = (
    "a ad ag an b c d df dg e eng f g h i j k l m mg mq n ng nr nrfg nrt ns nt nz o p q r rg rr rz s t tg u "
    "ud ug uj ul uv uz v vd vg vi vn vq x y z zg"
).split()
_POS_CHAR = {tag: chr(0x4E00 + i) for i, tag in enumerate(POS_TAGS)}
_UNKNOWN_POS = chr(0x4E00 + len(POS_TAGS))

logger = logging.getLogger(__name__)


def pos_strings(texts: Sequence[str], show_progress: bool = False) -> list[str]:
    """Each text's jieba POS-tag sequence, one character per word (HMM off: fast and deterministic)."""
    import jieba
    import jieba.posseg as pseg

    jieba.setLogLevel(logging.WARNING)
    iterator = texts
    if show_progress:
        from tqdm.auto import tqdm

        iterator = tqdm(texts, desc="POS tagging", unit="sent")
    return ["".join(_POS_CHAR.get(p.flag, _UNKNOWN_POS) for p in pseg.lcut(t, HMM=False)) for t in iterator]


def pos_distances(query_pos: Sequence[str], bank_pos: Sequence[str], workers: int = -1) -> np.ndarray:
    """``[queries, bank]`` Levenshtein distances between POS strings (rapidfuzz, all cores)."""
    return cdist(list(query_pos), list(bank_pos), scorer=Levenshtein.distance, workers=workers, dtype=np.int32)


def _blocked(
    query_texts: Sequence[str] | None, bank_texts: Sequence[str] | None, exclude: Sequence[int] | None, shape
) -> np.ndarray:
    """``[queries, bank]`` True where a query may not use a bank sentence (itself, or the same text)."""
    blocked = np.zeros(shape, dtype=bool)
    if exclude is not None:
        rows = np.array([i for i, e in enumerate(exclude) if e is not None and e >= 0], dtype=np.int64)
        if len(rows):
            blocked[rows, np.asarray(exclude)[rows].astype(np.int64)] = True
    if query_texts is not None and bank_texts is not None:
        by_text: dict[str, list[int]] = {}
        for j, t in enumerate(bank_texts):
            by_text.setdefault(t, []).append(j)
        for i, t in enumerate(query_texts):
            if t in by_text:
                blocked[i, by_text[t]] = True
    return blocked


def smallest(keys: np.ndarray, n: int) -> np.ndarray:
    """Per row, the column indices of the ``n`` smallest keys, ascending, ties by column index.

    ``argpartition`` alone would keep an arbitrary subset of the keys tied with the n-th smallest;
    every column at most that key is kept and sorted by (key, column) instead.
    """
    n = min(n, keys.shape[1])
    # the n-th smallest key of each row
    cutoff = np.take_along_axis(keys, np.argpartition(keys, n - 1, axis=1)[:, n - 1 : n], axis=1)
    rows, cols = np.nonzero(keys <= cutoff)  # each row's candidates (at least n), row by row
    order = np.lexsort((cols, keys[rows, cols], rows))
    counts = np.bincount(rows, minlength=len(keys))
    starts = np.cumsum(counts) - counts
    return cols[order][starts[:, None] + np.arange(n)]


def smallest_set(keys: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` smallest of the 1-D ``keys``, ties by position, in ascending position order: the
    set :func:`smallest` picks, without ordering it by key (for callers that want it by position)."""
    if n >= len(keys):
        return np.arange(len(keys))
    cutoff = np.partition(keys, n - 1)[n - 1]
    below = np.flatnonzero(keys < cutoff)
    tied = np.flatnonzero(keys == cutoff)[: n - len(below)]
    return np.sort(np.concatenate([below, tied]))


def rank_memories(
    method: str,
    n: int,
    bank_pos: Sequence[str],
    bank_types: np.ndarray,
    query_pos: Sequence[str],
    query_types: np.ndarray | None = None,
    exclude: Sequence[int] | None = None,
    query_texts: Sequence[str] | None = None,
    bank_texts: Sequence[str] | None = None,
    seed: int = 0,
    index: "BankIndex | None" = None,
    rows_limit: int | None = None,
) -> np.ndarray:
    """Bank indices ``[queries, n]`` of each query's memories, best first.

    ``bank_types`` / ``query_types`` are ``[sentences, num_types]`` 0/1 matrices of the entity types
    a sentence contains (for the query: predicted for ``category``, gold for ``gold_category``).
    ``exclude[i]`` is the bank index of query ``i`` itself (or ``-1``). ``index`` is the bank's
    :class:`BankIndex`, which ``lexical``, ``entity`` and ``hybrid`` read (with ``query_texts``). ``rows_limit``:
    only the bank's first ``rows_limit`` sentences may be retrieved (the memory network's labelled sentences, without
    the memories of the entities taught by name after them).
    """
    if method not in METHODS:
        raise ValueError(f"unknown retrieval method {method!r}; choose one of {', '.join(METHODS)}")
    num_q, num_b = len(query_pos), len(bank_pos)
    limit = num_b if rows_limit is None else min(rows_limit, num_b)
    if n > limit - 1:
        raise ValueError(f"cannot pick {n} memories from a bank of {limit} sentences")
    if method in TYPE_METHODS and query_types is None:
        raise ValueError(f"method {method!r} needs the query's entity types")
    if method in INDEX_METHODS and (index is None or query_texts is None):
        raise ValueError(f"method {method!r} needs the bank's BankIndex and the query texts")
    with _blas_controller().limit(limits=1, user_api="blas"):
        if method in INDEX_METHODS:
            return _rank_by_index(method, n, index, query_texts, exclude, bank_pos, bank_types, query_pos, query_types,
                                  rows_limit=limit)  # fmt: skip
        blocked = _blocked(query_texts, bank_texts, exclude, (num_q, num_b))
        blocked[:, limit:] = True
        if method == "random":
            rng = np.random.default_rng(seed)
            keys = rng.random((num_q, num_b))
            keys[blocked] = np.inf
            return smallest(keys, n)
        if method == "pos_edit":
            keys = pos_distances(query_pos, bank_pos).astype(np.int64)
            keys[blocked] = np.iinfo(np.int64).max
            return smallest(keys, n)
        return _rank_by_category(n, bank_pos, bank_types, query_pos, query_types, blocked)


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """Retrieval keeps BLAS to one thread. Its matrix products are small (an MMR gram matrix is
    ``[4n+1, a few thousand]``), and multithreaded BLAS waits for its threads longer than it computes:
    27 ms against 0.7 ms for one gram matrix on a 2-core machine busy with other work."""
    return ThreadpoolController()


class BankIndex:
    """What ``lexical`` and ``entity`` retrieval read of a bank, built once per bank.

    ``texts``: the bank sentences; ``entities``: per sentence its labelled ``(start, end, type)``
    spans. Holds the TF-IDF matrix of character 1-3-grams (rows L2-normalised, so a dot product is
    the cosine), an inverted index of the 2-3-grams over the distinct texts, and an Aho-Corasick
    automaton of the entity strings, each mapped to the bank sentences that label it. Identical bank
    texts are grouped, so excluding a query's own text is one dictionary look-up.

    A query's lexical candidates are the distinct bank texts that share a character 2- or 3-gram
    with it: a shared unigram (的, ，) says little and would touch most of a large bank. The
    ``EXACT_CANDIDATES`` with the highest 2-3-gram score are then scored by the full 1-3-gram
    cosine. This keeps a query's cost to the postings of its own 2-3-grams (a few milliseconds at
    500,000 sentences) instead of a product with the whole bank.
    """

    MIN_ENTITY_CHARS = 2  # a one-character "entity string" matches nearly every sentence
    # per query, the 2-3-gram candidates scored by the full cosine; 256 picks the memories 1,024 picked for all but
    # 5 of 12,091 CLUENER dev and train queries, and scores 4x fewer cosines (benchmarks/LOG.md)
    EXACT_CANDIDATES = 256
    # up to this many stored unigrams (about 30 per sentence), a batch of queries' unigram parts is one product
    # with the whole bank; above it, each query gathers its candidates' rows (measured crossover: about 1M)
    FULL_PRODUCT_ENTRIES = 1_000_000

    def __init__(self, texts: Sequence[str], entities: Sequence[Sequence[tuple[int, int, str]]]):
        import ahocorasick
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.texts = list(texts)
        if len(entities) != len(self.texts):
            raise ValueError(f"{len(self.texts)} bank texts but {len(entities)} entity lists")
        self.vectorizer = TfidfVectorizer(
            analyzer="char", ngram_range=(1, 3), lowercase=False, sublinear_tf=True, dtype=np.float32
        )
        matrix = self.vectorizer.fit_transform(self.texts).tocsr()
        # the vocabulary as sorted n-gram keys (see _ngram_keys), for vectors()
        grams = self.vectorizer.get_feature_names_out()
        gram_keys = _vocabulary_keys(grams)
        self.gram_order = np.argsort(gram_keys)
        self.gram_keys = gram_keys[self.gram_order]
        self.by_text: dict[str, list[int]] = {}
        for j, t in enumerate(self.texts):
            self.by_text.setdefault(t, []).append(j)
        # the first sentence of each distinct text: candidates are drawn from these, as a copy brings nothing new
        self.distinct_ids = np.array(sorted(ids[0] for ids in self.by_text.values()), dtype=np.int64)
        self.row_of = np.empty(len(self.texts), dtype=np.int64)  # bank sentence -> its distinct text's row
        for row, j in enumerate(self.distinct_ids.tolist()):
            self.row_of[self.by_text[self.texts[j]]] = row
        self.matrix = matrix[self.distinct_ids]  # [distinct texts, n-grams]
        unigram = np.fromiter(map(len, grams), dtype=np.int64, count=len(grams)) == 1
        # a cosine is its 2-3-gram part, from the postings, plus its unigram part, from a small dense vector
        self.unigram_ids = np.full(len(grams), -1, dtype=np.int64)
        self.unigram_ids[unigram] = np.arange(int(unigram.sum()))
        is_unigram = unigram[self.matrix.indices]
        self.unigrams = _csr_subset(self.matrix, is_unigram, self.unigram_ids[self.matrix.indices], int(unigram.sum()))
        # [n-grams, distinct texts] with the unigram rows empty: a query's product reads only its own 2-3-grams'
        # postings
        self.postings = _csr_subset(self.matrix, ~is_unigram, self.matrix.indices, len(grams)).T.tocsr()
        postings: dict[str, set[int]] = {}
        for j, (text, spans) in enumerate(zip(self.texts, entities)):
            for start, end, _ in spans:
                if end - start >= self.MIN_ENTITY_CHARS:
                    postings.setdefault(text[start:end], set()).add(j)
        self.num_entity_strings = len(postings)
        self.automaton = ahocorasick.Automaton()
        for string in sorted(postings):
            self.automaton.add_word(string, (len(string), np.array(sorted(postings[string]), dtype=np.int64)))
        if postings:
            self.automaton.make_automaton()

    @classmethod
    def of_bank(cls, bank, id2label: dict[int, str], scheme: str, rows: int | None = None) -> "BankIndex":
        """The index of a ``MemoryBank`` (of its first ``rows`` sentences): its sentences as retrieval sees them
        (rebuilt from their ids) and the entities their labels spell out in ``scheme``."""
        return cls.of_labels(bank.sentence_texts()[:rows], bank.labels[:rows].tolist(), id2label, scheme)

    @classmethod
    def of_labels(
        cls, texts: Sequence[str], labels: Sequence[Sequence[int]], id2label: dict, scheme: str
    ) -> "BankIndex":
        """The index of sentences and their tag ids (``-100`` off characters), whose spans are in ``scheme``."""
        from .tag_schemes import tags_to_spans

        entities = [
            [
                (s.start, s.end, s.type)
                for s in tags_to_spans([id2label[t] for t in row if t != -100], scheme, strict=False)
            ]
            for row in labels
        ]
        return cls(texts, entities)

    def __len__(self) -> int:
        return len(self.texts)

    def vectors(self, query_texts: Sequence[str]):
        """The queries' TF-IDF rows (CSR, L2-normalised): ``self.vectorizer.transform``, bit for bit.

        The vectorizer counts each text's n-grams in a Python loop (about a sixth of a query's retrieval);
        here they are counted for all texts at once, as keys looked up in the sorted vocabulary, and
        weighted as ``TfidfTransformer.transform`` does (sublinear tf, idf, L2 norm)."""
        import sklearn
        from scipy.sparse import csr_matrix
        from sklearn.preprocessing import normalize

        texts = [_WHITE_SPACES.sub(" ", t) for t in query_texts]  # the vectorizer's own normalisation
        owner, keys = _ngram_keys(texts)
        # look up each distinct key once, in sorted order (the search then walks the vocabulary mostly forward)
        distinct, inverse = np.unique(keys, return_inverse=True)
        found = np.minimum(np.searchsorted(self.gram_keys, distinct), len(self.gram_keys) - 1)[inverse]
        hit = self.gram_keys[found] == keys
        num_grams = len(self.gram_keys)
        cells, counts = np.unique(owner[hit] * num_grams + self.gram_order[found[hit]], return_counts=True)
        rows = cells // num_grams
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(texts)))])
        matrix = csr_matrix(
            (counts.astype(np.float32), cells % num_grams, indptr), shape=(len(texts), num_grams), dtype=np.float32
        )
        np.log(matrix.data, matrix.data)  # sublinear tf
        matrix.data += 1.0
        matrix.data *= self.vectorizer.idf_[matrix.indices]
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):  # checks cost more here
            return normalize(matrix, norm="l2", copy=False)

    def scores(self, vectors, rows_limit: int | None = None) -> list["QueryScores"]:
        """Per query row of ``vectors``, its :class:`QueryScores` against the bank (its candidates among the first
        ``rows_limit`` sentences)."""
        long = vectors @ self.postings
        # each query's unigram weights, dense over the bank's unigrams
        unigram = np.zeros((vectors.shape[0], self.unigrams.shape[1]), dtype=np.float32)
        owner = np.repeat(np.arange(vectors.shape[0]), np.diff(vectors.indptr))
        ids = self.unigram_ids[vectors.indices]
        unigram[owner[ids >= 0], ids[ids >= 0]] = vectors.data[ids >= 0]
        parts = [None] * vectors.shape[0]
        if self.unigrams.nnz <= self.FULL_PRODUCT_ENTRIES:
            # a small bank: the unigram part of every query against every distinct text in one product, which
            # reads the bank's unigram matrix once for all queries (each sum is the same as a row's own product)
            parts = (self.unigrams @ np.ascontiguousarray(unigram.T)).T
        return [QueryScores(self, unigram[r], _row(long, r), parts[r], rows_limit) for r in range(vectors.shape[0])]

    def similarities(self, query_texts: Sequence[str]) -> np.ndarray:
        """Dense ``[queries, bank]`` TF-IDF cosine similarities against the whole bank (for analysis and tests)."""
        return (self.vectors(query_texts) @ self.matrix.T).toarray()[:, self.row_of]

    def gram(self, ids: np.ndarray) -> np.ndarray:
        """``[len(ids), len(ids)]`` cosines among bank sentences, on the columns they use (no vocabulary-wide
        conversion)."""
        owner, columns, values = _csr_rows(self.matrix, self.row_of[ids])
        # each n-gram gets one dense column: the last of its entries' positions, written into a per-thread
        # n-gram -> column table (cheaper than sorting the columns with np.unique; stale entries are never read)
        slot = getattr(_scratch, "slot", None)
        if slot is None or len(slot) < self.matrix.shape[1]:
            slot = _scratch.slot = np.empty(self.matrix.shape[1], dtype=np.int64)
        slot[columns] = np.arange(len(columns))
        dense = np.zeros((len(ids), len(columns)), dtype=np.float32)
        dense[owner, slot[columns]] = values
        return dense @ dense.T

    def entity_matches(self, text: str) -> list[tuple[int, int, np.ndarray]]:
        """``(start, end, bank sentences labelling text[start:end])`` for every bank entity string in ``text``."""
        if not self.num_entity_strings:
            return []
        return [(end + 1 - length, end + 1, ids) for end, (length, ids) in self.automaton.iter(text)]

    def blocked(self, query_text: str | None, exclude: int | None) -> list[int]:
        """The bank sentences a query may not retrieve: itself and any identical text."""
        out = list(self.by_text.get(query_text, ())) if query_text is not None else []
        if exclude is not None and exclude >= 0:
            out.append(int(exclude))
        return out


_WHITE_SPACES = re.compile(r"\s\s+")  # what scikit-learn's char analyzer turns into one space


def _gram_key(codes: np.ndarray, at: np.ndarray, n: int) -> np.ndarray:
    """The keys of the ``n``-grams starting at ``at`` in ``codes`` (code point + 1 per character): one 21-bit
    field per character, so every string of up to three characters has its own int64 key."""
    key = codes[at].copy()
    for k in range(1, n):
        key |= codes[at + k] << (21 * k)
    return key


def _codes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The texts' characters as one array of code points + 1, and each text's length."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
    return codes + 1, lengths


def _vocabulary_keys(grams: Sequence[str]) -> np.ndarray:
    """The key of each n-gram of a fitted vocabulary (strings of one to three characters)."""
    codes, lengths = _codes(grams)
    codes = np.concatenate([codes, [0, 0]])
    first = np.cumsum(lengths) - lengths
    key = codes[first].copy()
    for k in (1, 2):
        longer = lengths > k
        key[longer] |= codes[first[longer] + k] << (21 * k)
    return key


def _ngram_keys(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The keys of every character 1-, 2- and 3-gram of each text, and the index of the text each belongs to."""
    codes, lengths = _codes(texts)
    codes = np.concatenate([codes, [0, 0]])
    ends = np.repeat(np.cumsum(lengths), lengths)  # per character, where its text ends
    starts = np.arange(len(ends))
    owner_of = np.repeat(np.arange(len(texts)), lengths)
    owners, keys = [], []
    for n in (1, 2, 3):
        at = starts[starts + n <= ends]
        owners.append(owner_of[at])
        keys.append(_gram_key(codes, at, n))
    return np.concatenate(owners), np.concatenate(keys)


_scratch = threading.local()  # per thread, BankIndex.gram's n-gram -> column table


def _row(matrix, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``r`` of CSR ``matrix`` as ``(column indices, values)``: views, where ``matrix[r]`` would build a new
    sparse matrix (which costs more than what a query then does with the row)."""
    a, b = matrix.indptr[r], matrix.indptr[r + 1]
    return matrix.indices[a:b], matrix.data[a:b]


def _csr_rows(matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries of CSR ``matrix``'s ``rows`` as ``(position in rows, column, value)``, row by row in
    stored order: what ``matrix[rows]`` holds, without scipy's index checks and a new matrix per call."""
    starts = matrix.indptr[rows]
    counts = matrix.indptr[rows + 1] - starts
    owner = np.repeat(np.arange(len(rows)), counts)
    entries = np.arange(len(owner)) + np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return owner, matrix.indices[entries], matrix.data[entries]


def _csr_subset(matrix, keep: np.ndarray, columns: np.ndarray, num_columns: int):
    """The entries of CSR ``matrix`` where ``keep`` (per stored entry), their columns renumbered to ``columns``."""
    from scipy.sparse import csr_matrix

    row_of_entry = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of_entry, minlength=matrix.shape[0]))])
    return csr_matrix((matrix.data[keep], columns[keep], indptr), shape=(matrix.shape[0], num_columns))


class QueryScores:
    """One query's TF-IDF cosines against a :class:`BankIndex`, computed only where retrieval looks.

    ``candidates`` are the distinct bank texts (their first sentence) sharing a 2-3-gram with the
    query, the best ``BankIndex.EXACT_CANDIDATES`` of them by that 2-3-gram part of the cosine.
    ``cosines(ids)`` is the full 1-3-gram cosine: the 2-3-gram part read off the postings product,
    plus the unigram part against a dense vector of the (few thousand) unigrams.
    """

    def __init__(
        self,
        index: BankIndex,
        unigram: np.ndarray,
        long: tuple[np.ndarray, np.ndarray],
        unigram_all: np.ndarray | None = None,
        rows_limit: int | None = None,
    ):
        """``unigram``: the query's TF-IDF weights of the bank's unigrams (dense); ``long``: its postings product
        as ``(columns, values)``; ``unigram_all``: the unigram part against every distinct text, if already
        computed; ``rows_limit``: candidates only among the first bank sentences."""
        self.index = index
        self.unigram = unigram
        self.unigram_all = unigram_all
        self.long = np.zeros(len(index.distinct_ids), dtype=np.float32)  # per distinct text, the 2-3-gram part
        rows, values = long
        self.long[rows] = values
        if rows_limit is not None:  # before the cut, so that the rows past the limit take no candidate's place
            keep = index.distinct_ids[rows] < rows_limit
            rows, values = rows[keep], values[keep]
        if len(rows) > index.EXACT_CANDIDATES:
            rows = rows[smallest_set(-values, index.EXACT_CANDIDATES)]
        self.candidates = np.sort(index.distinct_ids[rows])

    def cosines(self, ids: np.ndarray) -> np.ndarray:
        rows = self.index.row_of[np.asarray(ids, dtype=np.int64)]
        if self.unigram_all is not None:
            return self.long[rows] + self.unigram_all[rows]
        return self.long[rows] + self.index.unigrams[rows] @ self.unigram

    def shortlist(self, ids: np.ndarray, k: int) -> np.ndarray:
        """Of bank sentences ``ids`` (ascending), the ``k`` with the largest 2-3-gram part (ties: lower index),
        ascending."""
        if len(ids) <= k:
            return ids
        return ids[smallest_set(-self.long[self.index.row_of[ids]], k)]

    def all_cosines(self) -> np.ndarray:
        """Against every bank sentence (the slow path, for a query that shares almost nothing with the bank)."""
        return self.cosines(np.arange(len(self.index)))


LEXICAL_POOL = 4  # MMR picks from the best LEXICAL_POOL * n candidates
MMR_LAMBDA = 0.7  # weight of the similarity to the query against that to the memories already picked
ENTITY_POSTING_LIMIT = 64  # per matched entity string, the most similar bank sentences that label it


def _mmr(index: BankIndex, sims: np.ndarray, candidates: np.ndarray, n: int, picked: list[int]) -> list[int]:
    """Extend ``picked`` to ``n`` memories from ``candidates`` (best first, one per distinct text) by maximal
    marginal relevance."""
    candidates = np.array([c for c in candidates.tolist() if c not in picked], dtype=np.int64)
    if not len(candidates) or len(picked) >= n:
        return picked
    pool = np.concatenate([np.array(picked, dtype=np.int64), candidates])
    gram = index.gram(pool)
    chosen = list(range(len(picked)))
    free = list(range(len(picked), len(pool)))
    while len(chosen) < n and free:
        redundancy = gram[np.ix_(free, chosen)].max(axis=1) if chosen else np.zeros(len(free))
        score = MMR_LAMBDA * sims[pool[free]] - (1 - MMR_LAMBDA) * redundancy
        best = int(np.flatnonzero(score == score.max())[0])  # ties: the candidate ranked first
        chosen.append(free.pop(best))
    return [int(pool[c]) for c in chosen]


def _entity_cover(
    matches: list[tuple[int, int, np.ndarray]], sims: np.ndarray, blocked: set[int], limit: int
) -> list[int]:
    """Up to ``limit`` bank sentences that together label the most query characters inside the
    matched entity strings (``BankIndex.entity_matches``)."""
    coverage: dict[int, int] = {}  # bank sentence -> bit mask of the query characters it labels
    for start, end, ids in matches:
        if len(ids) > ENTITY_POSTING_LIMIT:
            ids = ids[np.lexsort((ids, -sims[ids]))[:ENTITY_POSTING_LIMIT]]
        bits = ((1 << (end - start)) - 1) << start
        for j in ids.tolist():
            if j not in blocked:
                coverage[j] = coverage.get(j, 0) | bits
    # ties go to the more similar sentence, then the lower index: order the sentences so once, and take the first
    # of those that cover the most new characters
    ids = np.fromiter(coverage, dtype=np.int64, count=len(coverage))
    ids = ids[np.lexsort((ids, -sims[ids]))].tolist()
    masks = [coverage[j] for j in ids]
    picked: list[int] = []
    covered = 0
    while len(picked) < limit and ids:
        gains = [(mask & ~covered).bit_count() for mask in masks]
        gain = max(gains)
        if not gain:
            break
        best = gains.index(gain)
        picked.append(ids.pop(best))
        covered |= masks.pop(best)
    return picked


def _rank_by_index(
    method,
    n,
    index: BankIndex,
    query_texts,
    exclude,
    bank_pos,
    bank_types,
    query_pos,
    query_types,
    chunk: int = 256,
    rows_limit: int | None = None,
) -> np.ndarray:
    """``lexical``, ``entity`` and ``hybrid`` (see the module docstring), ``chunk`` queries at a time, from the first
    ``rows_limit`` bank sentences."""
    out = np.empty((len(query_texts), n), dtype=np.int64)
    limit = len(index) if rows_limit is None else rows_limit
    pool = min(limit, LEXICAL_POOL * n + 1)
    for start in range(0, len(query_texts), chunk):
        texts = list(query_texts[start : start + chunk])
        limited = rows_limit if rows_limit is not None and rows_limit < len(index) else None
        for r, (text, scores) in enumerate(zip(texts, index.scores(index.vectors(texts), limited))):
            cols = scores.candidates
            blocked = set(index.blocked(text, exclude[start + r] if exclude is not None else None))
            cols = cols[~np.isin(cols, list(blocked))] if blocked else cols
            if limit < len(index):
                cols = cols[cols < limit]
            # a frequent entity string is labelled in thousands of sentences of a large bank: only the
            # most similar few can be picked (ENTITY_POSTING_LIMIT), so only a shortlist is scored in full
            matches = (
                [
                    (a, b, scores.shortlist(ids, 4 * ENTITY_POSTING_LIMIT))
                    for a, b, ids in _below(index.entity_matches(text), limit)
                ]
                if method != "lexical"
                else []
            )
            sims = np.zeros(len(index), dtype=np.float32)
            if len(cols) < pool:  # too few sentences share a 2-3-gram: score the whole bank, one per distinct text
                sims[:] = scores.all_cosines()
                cols = (
                    index.distinct_ids[~np.isin(index.distinct_ids, list(blocked))] if blocked else index.distinct_ids
                )
                cols = cols[cols < limit]
            else:
                scored = cols
                if matches:  # the candidates and the matched sentences, ascending (a mask: cheaper than union1d)
                    marked = np.zeros(len(index), dtype=bool)
                    marked[cols] = True
                    for _, _, ids in matches:
                        marked[ids] = True
                    scored = np.flatnonzero(marked)
                sims[scored] = scores.cosines(scored)
            candidates = cols[smallest(-sims[cols][None, :], min(pool, len(cols)))[0]]
            if method == "lexical":
                picked = _mmr(index, sims, candidates, n, [])
            elif method == "entity":
                picked = _mmr(index, sims, candidates, n, _entity_cover(matches, sims, blocked, n))
            else:  # hybrid: entity-covering memories for the first half, category for the rest
                picked = _entity_cover(matches, sims, blocked, n - n // 2)
                row_blocked = np.zeros((1, len(bank_pos)), dtype=bool)
                row_blocked[0, [b for b in blocked | set(picked) if b < len(bank_pos)]] = True
                row_blocked[0, limit:] = True
                i = start + r
                rest = _rank_by_category(
                    n - len(picked),
                    bank_pos,
                    bank_types,
                    [query_pos[i]],
                    np.asarray(query_types)[i : i + 1],
                    row_blocked,
                )
                picked = picked + rest[0].tolist()
            if (
                len(picked) < n
            ):  # fewer distinct allowed texts than n in the pool: any allowed sentence, most similar first
                allowed = np.setdiff1d(np.arange(limit), np.array([*blocked, *picked], dtype=np.int64))
                picked = picked + allowed[smallest(-sims[allowed][None, :], n - len(picked))[0]].tolist()
            out[start + r] = picked
    return out


def _below(matches: list[tuple[int, int, np.ndarray]], limit: int) -> list[tuple[int, int, np.ndarray]]:
    """Entity matches with only their bank sentences below ``limit`` (a match left with none is dropped)."""
    out = []
    for a, b, ids in matches:
        ids = ids[ids < limit]
        if len(ids):
            out.append((a, b, ids))
    return out


def _rank_by_category(n, bank_pos, bank_types, query_pos, query_types, blocked, chunk: int = 1024) -> np.ndarray:
    """``category`` / ``gold_category``: order by (|Ys - Yt|, |Yt|, POS distance, bank index).

    The type key (|Ys - Yt|, |Yt|) is computed against the whole bank; POS distances only against the
    sentences whose type key is at most the query's n-th best one, the only ones that can be picked.
    That is usually a few hundred of CLUENER's 10,748, which keeps raw-input retrieval (one query per
    call) cheap. The order is the same as sorting the whole bank by the four keys.
    """
    yt, query_types = np.asarray(bank_types, dtype=np.int64), np.asarray(query_types)
    absent, size = (1 - yt).T, yt.sum(axis=1)
    bank_pos = list(bank_pos)
    out = np.empty((len(query_pos), n), dtype=np.int64)
    for start in range(0, len(query_pos), chunk):
        ys = np.asarray(query_types[start : start + chunk], dtype=np.int64)
        type_keys = (ys @ absent) * (yt.shape[1] + 1) + size[None, :]  # |Ys - Yt| first, then |Yt|
        type_keys[blocked[start : start + chunk]] = np.iinfo(np.int64).max
        cutoff = np.partition(type_keys, n - 1, axis=1)[:, n - 1]
        for row, (keys, limit) in enumerate(zip(type_keys, cutoff)):
            candidates = np.flatnonzero(keys <= limit)  # ascending bank index
            dist = pos_distances([query_pos[start + row]], [bank_pos[j] for j in candidates], workers=1)[0]
            out[start + row] = candidates[np.lexsort((candidates, dist, keys[candidates]))[:n]]
    return out


class RetrievalCache:
    """Retrieval results on disk, keyed by the bank, the queries, the method and ``n``."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    @staticmethod
    def key(method: str, n: int, *parts) -> str:
        h = hashlib.sha1(f"{method}|{n}|{RANKING_VERSION}".encode())
        for part in parts:
            if isinstance(part, np.ndarray):
                h.update(np.ascontiguousarray(part).tobytes())
                h.update(str(part.shape).encode())
            else:
                for item in part:
                    h.update(str(item).encode("utf-8"))
                    h.update(b"\x00")
        return f"{method}-n{n}-{h.hexdigest()[:16]}"

    def get_or_compute(self, key: str, compute) -> tuple[np.ndarray, float, bool]:
        """``(result, seconds, from_cache)``."""
        path = self.directory / f"{key}.npy"
        if path.exists():
            return np.load(path, allow_pickle=True), 0.0, True  # our own files (POS strings are object arrays)
        start = time.perf_counter()
        result = compute()
        seconds = time.perf_counter() - start
        self.directory.mkdir(parents=True, exist_ok=True)
        np.save(path, result)
        return result, seconds, False
