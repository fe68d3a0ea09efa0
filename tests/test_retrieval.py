"""Retrieval rules on a small hand-made bank (memory paper, section 2.1)."""

import numpy as np
import pytest

from modeling.retrieval import RetrievalCache, pos_distances, pos_strings, rank_memories

# types: 0 name, 1 company, 2 address
BANK_TEXTS = [
    "张三在北京工作",
    "李四去了华为",
    "王五在深圳的腾讯上班",
    "今天天气很好",
    "赵六是阿里的员工",
    "张三在北京工作",
]
BANK_TYPES = np.array([[1, 0, 1], [1, 1, 0], [1, 1, 1], [0, 0, 0], [1, 1, 0], [1, 0, 1]])


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def bank_pos():
    return pos_strings(BANK_TEXTS)


def test_training_query_never_retrieves_itself_or_an_identical_text():
    pos = bank_pos()
    for method in ("pos_edit", "category", "gold_category", "random"):
        mem = rank_memories(
            method,
            3,
            pos,
            BANK_TYPES,
            pos,
            BANK_TYPES,
            exclude=list(range(6)),
            query_texts=BANK_TEXTS,
            bank_texts=BANK_TEXTS,
        )
        for i, row in enumerate(mem):
            assert i not in row
            assert all(BANK_TEXTS[j] != BANK_TEXTS[i] for j in row)  # rows 0 and 5 are the same sentence


def test_category_ordering_and_tie_breaks():
    pos = bank_pos()
    query = np.array([[1, 1, 0]])  # name + company
    mem = rank_memories("category", 4, pos, BANK_TYPES, pos_strings(["孙七加入了字节"]), query)[0]
    # |Ys - Yt| = 0 for banks 1, 2, 4; of those |Yt| = 2 for 1 and 4 (before 2, which has 3 types)
    assert set(mem[:2]) == {1, 4} and mem[2] == 2
    d = pos_distances(pos_strings(["孙七加入了字节"]), pos)[0]
    assert (d[mem[0]], mem[0]) <= (d[mem[1]], mem[1])  # then POS distance, then bank index
    # the fourth: one type missing, fewest types (bank 0 or 5 with 2 types vs bank 3 with 0 types -> 3 has |Ys-Yt| = 2)
    assert mem[3] in (0, 5)


def test_pos_edit_is_nearest_first_and_deterministic():
    pos = bank_pos()
    q = pos_strings(["钱八在上海工作"])
    mem = rank_memories("pos_edit", 5, pos, BANK_TYPES, q)
    # the 5 nearest by edit distance (a plain dynamic programme here, not rapidfuzz), ties to the lower index
    distances = [edit_distance(q[0], p) for p in pos]
    assert list(mem[0]) == sorted(range(len(pos)), key=lambda j: (distances[j], j))[:5]
    assert list(pos_distances(q, pos)[0]) == distances
    assert np.array_equal(mem, rank_memories("pos_edit", 5, pos, BANK_TYPES, q))


def test_ties_at_the_last_place_go_to_the_lowest_bank_index():
    """Of many bank sentences tied on every key, the n picked are the lowest indices, in order."""
    rng = np.random.default_rng(0)
    pos = ["ab"] * 40 + ["abcd"] * 40  # 40 at POS distance 0 from the query, 40 at distance 2, shuffled below
    types = np.array([[1, 0]] * 80)
    perm = rng.permutation(80)
    pos, types = [pos[i] for i in perm], types[perm]
    nearest = sorted(i for i, p in enumerate(pos) if p == "ab")
    for method, query_types in (
        ("pos_edit", None),
        ("category", np.array([[1, 0]])),
        ("gold_category", np.array([[1, 0]])),
    ):
        mem = rank_memories(method, 4, pos, types, ["ab"], query_types)[0]
        assert list(mem) == nearest[:4], method


def test_category_ranking_equals_sorting_the_whole_bank_by_its_keys():
    """Category ranking computes POS distances only for the best type keys; on random banks (many ties)
    it picks what sorting every bank sentence by (|Ys - Yt|, |Yt|, POS distance, index) picks."""
    rng = np.random.default_rng(1)
    alphabet = "abc"
    bank_pos = ["".join(rng.choice(list(alphabet), rng.integers(1, 6))) for _ in range(200)]
    bank_types = (rng.random((200, 4)) < 0.3).astype(np.int64)
    query_pos = ["".join(rng.choice(list(alphabet), rng.integers(1, 6))) for _ in range(30)]
    query_types = (rng.random((30, 4)) < 0.3).astype(np.int64)
    exclude = list(rng.integers(-1, 200, 30))
    mem = rank_memories("category", 5, bank_pos, bank_types, query_pos, query_types, exclude=exclude)
    d = pos_distances(query_pos, bank_pos)
    for i in range(30):
        keys = sorted(
            (j == exclude[i], int((query_types[i] & (1 - bank_types[j])).sum()), int(bank_types[j].sum()), d[i, j], j)
            for j in range(200)
        )
        assert list(mem[i]) == [k[-1] for k in keys[:5]]


def test_random_is_seeded():
    pos = bank_pos()
    a = rank_memories("random", 3, pos, BANK_TYPES, pos, seed=1, exclude=list(range(6)))
    assert np.array_equal(a, rank_memories("random", 3, pos, BANK_TYPES, pos, seed=1, exclude=list(range(6))))
    assert not np.array_equal(a, rank_memories("random", 3, pos, BANK_TYPES, pos, seed=2, exclude=list(range(6))))


def test_bad_arguments():
    pos = bank_pos()
    with pytest.raises(ValueError, match="unknown retrieval method"):
        rank_memories("nearest", 2, pos, BANK_TYPES, pos)
    with pytest.raises(ValueError, match="needs the query's entity types"):
        rank_memories("category", 2, pos, BANK_TYPES, pos)
    with pytest.raises(ValueError, match="bank of 6"):
        rank_memories("pos_edit", 6, pos, BANK_TYPES, pos)


def test_cache(tmp_path):
    cache = RetrievalCache(tmp_path)
    key = cache.key("pos_edit", 2, BANK_TEXTS, BANK_TYPES)
    keys = [
        key,
        cache.key("pos_edit", 3, BANK_TEXTS, BANK_TYPES),
        cache.key("category", 2, BANK_TEXTS, BANK_TYPES),
        cache.key("pos_edit", 2, BANK_TEXTS[:-1], BANK_TYPES[:-1]),
    ]
    assert len(set(keys)) == len(keys), "method, n and the bank must each change the key"
    assert cache.key("pos_edit", 2, list(BANK_TEXTS), BANK_TYPES.copy()) == key  # equal contents, equal key
    calls = []
    first, _, cached = cache.get_or_compute(key, lambda: calls.append(1) or np.arange(4))
    again, seconds, cached_again = cache.get_or_compute(key, lambda: calls.append(1) or np.arange(4))
    assert not cached and cached_again and calls == [1] and np.array_equal(first, again)


def test_blending_gold_into_predicted_types():
    from data_scripts.memory_data import blend_gold_types

    rng = np.random.default_rng(0)
    gold = {"train": rng.integers(0, 2, (40, 3)), "validation": rng.integers(0, 2, (10, 3))}
    predicted = {split: 1 - g for split, g in gold.items()}  # every row wrong, so replaced rows are easy to count
    assert all((b == predicted[s]).all() for s, b in blend_gold_types(predicted, gold, 0.0, seed=1).items())
    assert all((b == gold[s]).all() for s, b in blend_gold_types(predicted, gold, 1.0, seed=1).items())
    half = blend_gold_types(predicted, gold, 0.5, seed=1)
    assert [(half[s] == gold[s]).all(axis=1).sum() for s in ("train", "validation")] == [20, 5]
    assert all(
        ((half[s] == gold[s]).all(axis=1) | (half[s] == predicted[s]).all(axis=1)).all() for s in half
    )  # whole rows
    assert all((half[s] == blend_gold_types(predicted, gold, 0.5, seed=1)[s]).all() for s in half)  # seeded
    assert not all((half[s] == blend_gold_types(predicted, gold, 0.5, seed=2)[s]).all() for s in half)
    assert (predicted["train"] == 1 - gold["train"]).all()  # the input is left alone
    unlabelled = blend_gold_types({**predicted, "test": np.ones((5, 3), dtype=int)}, gold, 0.5, seed=1)
    assert (unlabelled["test"] == 1).all() and all(
        (unlabelled[s] == half[s]).all() for s in half
    )  # no gold: kept as predicted
    with pytest.raises(ValueError, match="within"):
        blend_gold_types(predicted, gold, 1.5, seed=1)


# ---- lexical, entity and hybrid: the query's own strings ------------------------------------------
from modeling.retrieval import BankIndex  # noqa: E402
from data_scripts.memory_data import memory_evidence_rate  # noqa: E402
from modeling.tag_schemes import Span  # noqa: E402

# per bank sentence its labelled entities (start, end, type), written by hand for BANK_TEXTS
BANK_ENTITIES = [
    [(0, 2, "name"), (3, 5, "address")],
    [(0, 2, "name"), (4, 6, "company")],
    [(0, 2, "name"), (3, 5, "address"), (6, 8, "company")],
    [],
    [(0, 2, "name"), (3, 5, "company")],
    [(0, 2, "name"), (3, 5, "address")],
]


def index_methods(method, query, n, exclude=None, query_types=None):
    index = BankIndex(BANK_TEXTS, BANK_ENTITIES)
    pos = bank_pos()
    return rank_memories(
        method, n, pos, BANK_TYPES, pos_strings(query), query_types, exclude, query, BANK_TEXTS, index=index
    )


def test_entity_retrieval_covers_the_query_entity_strings_first():
    # 张三 is labelled in banks 0, 2 (no: 王五), 5; 华为 in bank 1; 深圳 in bank 2
    query = ["张三跳槽去了华为，搬到深圳"]
    mem = index_methods("entity", query, 3)[0].tolist()
    # bank 2 labels 深圳 only (2 chars); banks 0/5 label 张三 (2 chars);
    # bank 1 labels 华为 and 李四 (only 华为 in the query)
    assert (
        set(mem) >= {1, 2} and len({0, 5} & set(mem)) == 1
    )  # one sentence per string: no second 张三 memory while others cover more
    assert 0 in mem  # of the tied identical texts 0 and 5 (same coverage, same similarity), the lower bank index


def test_entity_retrieval_excludes_the_query_and_identical_texts_and_is_deterministic():
    first = index_methods("entity", BANK_TEXTS, 3, exclude=list(range(6)))
    assert np.array_equal(first, index_methods("entity", BANK_TEXTS, 3, exclude=list(range(6))))
    for i, row in enumerate(first):
        assert i not in row and all(BANK_TEXTS[j] != BANK_TEXTS[i] for j in row)
        assert len(set(row.tolist())) == 3


def test_entity_retrieval_without_any_match_falls_back_to_lexical():
    query = ["今天天气不错"]
    assert index_methods("entity", query, 2)[0].tolist() == index_methods("lexical", query, 2)[0].tolist()
    assert index_methods("lexical", query, 2)[0][0] == 3  # the only sentence sharing 今天天气


def test_lexical_is_most_similar_first_with_diversity():
    index = BankIndex(BANK_TEXTS, BANK_ENTITIES)
    query = ["张三在北京上班"]
    sims = index.similarities(query)[0]
    mem = index_methods("lexical", query, 2)[0].tolist()
    assert mem[0] == int(np.argmax(sims)) == 0  # the nearest (0 and 5 tie: the lower index)
    # the second is not the identical copy of the first (5), whose similarity ties with it: MMR takes a new sentence
    assert mem[1] != 5 and sims[5] == sims[0]


def test_hybrid_takes_half_by_entity_strings_and_half_by_category():
    query = ["孙七去了华为"]
    mem = index_methods("hybrid", query, 4, query_types=np.array([[1, 1, 0]]))[0].tolist()
    assert mem[0] == 1  # the only sentence labelling 华为
    category = rank_memories("category", 4, bank_pos(), BANK_TYPES, pos_strings(query), np.array([[1, 1, 0]]))[
        0
    ].tolist()
    assert mem[1:] == [j for j in category if j != 1][:3]


def test_index_methods_need_the_index_and_texts():
    with pytest.raises(ValueError, match="BankIndex"):
        rank_memories("entity", 2, bank_pos(), BANK_TYPES, bank_pos()[:1])


def test_memory_evidence_rate_counts_entities_found_with_their_type_in_the_memories():
    bank_spans = [[Span(t, a, b) for a, b, t in ents] for ents in BANK_ENTITIES]
    queries = ["张三去了华为", "深圳很大", "没有实体"]
    spans = [[Span("name", 0, 2), Span("company", 4, 6)], [Span("address", 0, 2)], []]
    # query 0: memories 0 (张三 name) and 3 -> 1 of 2; query 1: memory 4 (no 深圳) and 1 -> 0 of 1;
    # query 2 has no entity
    rate = memory_evidence_rate(spans, queries, [[0, 3], [4, 1], [0, 1]], bank_spans, BANK_TEXTS)
    assert rate == {"entities": 3, "entity_rate": 1 / 3, "sentences": 2, "sentence_rate": 0.5}
    # the same string with another type is no evidence
    wrong_type = [[Span("company", 0, 2)], [], []]
    assert (
        memory_evidence_rate(wrong_type, queries, [[0, 5], [0, 1], [0, 1]], bank_spans, BANK_TEXTS)["entity_rate"]
        == 0.0
    )


def test_entity_cover_prefers_new_characters_over_similarity():
    # after bank 1 (张三 + 华为), bank 0 is the most similar but covers nothing new; bank 2 covers 深圳
    texts = ["张三跳槽去了北京", "张三跳槽去了华为吗", "深圳天气好", "今天很好"]
    entities = [[(0, 2, "name"), (6, 8, "address")], [(0, 2, "name"), (6, 8, "company")], [(0, 2, "address")], []]
    index = BankIndex(texts, entities)
    query = ["张三跳槽去了华为，搬到深圳"]
    pos, types = [""] * len(texts), np.zeros((len(texts), 1))
    sims = index.similarities(query)[0]
    assert sims[1] > sims[0] > sims[2]
    assert rank_memories("entity", 2, pos, types, [""], None, None, query, texts, index=index)[0].tolist() == [1, 2]


def test_entity_cover_ties_go_to_the_more_similar_then_the_lower_index():
    # banks 0, 1 and 3 each cover 张三 and nothing else; 1 is the most similar to the query; 0 and 3 are the same text
    texts = ["张三很好", "张三跳槽去了华为", "今天天气", "张三很好"]
    entities = [[(0, 2, "name")], [(0, 2, "name")], [], [(0, 2, "name")]]
    index = BankIndex(texts, entities)
    pos, types = [""] * len(texts), np.zeros((len(texts), 1))
    query = ["张三跳槽去了深圳"]
    assert rank_memories("entity", 1, pos, types, [""], None, None, query, texts, index=index)[0].tolist() == [1]
    blocked = [1]  # without it, 0 and 3 tie on coverage and similarity: the lower index
    assert rank_memories("entity", 1, pos, types, [""], None, blocked, query, texts, index=index)[0].tolist() == [0]


def test_entity_matches_are_scored_outside_the_lexical_candidates():
    """A sentence that labels one of the query's strings is ranked by its own similarity even when it is not among
    the EXACT_CANDIDATES most similar by 2-3-grams."""
    filler = [f"跳槽去了深圳的人{i}" for i in "甲乙丙丁戊"]  # the most similar by 2-3-grams, no entities
    texts = [*filler, "张三很好", "张三说跳槽"]  # 5 and 6 both label 张三; 6 is the more similar
    entities = [[] for _ in filler] + [[(0, 2, "name")], [(0, 2, "name")]]
    index = BankIndex(texts, entities)
    index.EXACT_CANDIDATES = len(filler)
    pos, types = [""] * len(texts), np.zeros((len(texts), 1))
    query = ["张三跳槽去了深圳"]
    assert set(index.scores(index.vectors(query))[0].candidates.tolist()) == set(range(len(filler)))
    sims = index.similarities(query)[0]
    assert sims[6] > sims[5]
    assert rank_memories("entity", 1, pos, types, [""], None, None, query, texts, index=index)[0].tolist() == [6]


def test_hybrid_takes_exactly_half_by_entity_strings():
    query = ["张三去了华为，在深圳"]  # 张三 (banks 0, 5), 华为 (1), 深圳 (2): three strings to cover
    mem = index_methods("hybrid", query, 4, query_types=np.array([[1, 1, 0]]))[0].tolist()
    covering = {0, 1, 2, 5}
    assert len(set(mem[:2]) & covering) == 2
    category = rank_memories("category", 4, bank_pos(), BANK_TYPES, pos_strings(query), np.array([[1, 1, 0]]))[
        0
    ].tolist()
    assert mem[2:] == [j for j in category if j not in mem[:2]][:2]


# ---- the index at scale: candidates from 2-3-gram postings, full cosines only where retrieval looks ----
def sample_bank():
    import json

    from data_scripts.sample import SAMPLE_DIR

    texts = [json.loads(line)["text"] for line in (SAMPLE_DIR / "train.json").read_text(encoding="utf-8").splitlines()]
    texts = texts + texts[:5]  # a few identical texts, as real corpora have
    return texts, [[] for _ in texts]


def long_grams(text):
    return {text[i : i + k] for k in (2, 3) for i in range(len(text) - k + 1)}


def test_query_scores_are_the_full_cosine_and_candidates_share_a_bigram(monkeypatch):
    import modeling.retrieval as retrieval

    texts, entities = sample_bank()
    index = BankIndex(texts, entities)
    queries = ["这家科技公司发布了一款新产品，获得了国家奖。", "中国足球队", "今天天气很好"]
    full = index.similarities(queries)
    first = {t: texts.index(t) for t in texts}
    for query, scores, expected in zip(queries, index.scores(index.vectors(queries)), full):
        np.testing.assert_allclose(scores.all_cosines(), expected, atol=1e-6)
        np.testing.assert_allclose(scores.cosines(np.arange(len(texts))), expected, atol=1e-6)
        sharing = sorted({first[t] for t in texts if long_grams(t) & long_grams(query)})
        assert scores.candidates.tolist() == sharing  # every distinct text sharing a 2-3-gram, and only those
    # capped: the candidates with the largest 2-3-gram part of the cosine, i.e. minus the unigram part
    monkeypatch.setattr(retrieval.BankIndex, "EXACT_CANDIDATES", 5)
    scores = index.scores(index.vectors(queries[:1]))[0]
    vec = index.vectorizer  # the 2-3-gram part by brute force, over the dense TF-IDF vectors
    names = vec.get_feature_names_out()
    q = vec.transform(queries[:1]).toarray()[0]
    m = vec.transform(texts).toarray()
    uni = np.array([len(g) == 1 for g in names])
    long_part = m[:, ~uni] @ q[~uni]
    ranked = sorted({first[t] for t in texts}, key=lambda j: (-round(float(long_part[j]), 6), j))[:5]
    assert scores.candidates.tolist() == sorted(ranked)


def test_query_scores_are_the_same_from_one_product_with_the_bank_and_from_each_querys_rows(monkeypatch):
    import modeling.retrieval as retrieval

    texts, entities = sample_bank()
    index = BankIndex(texts, entities)
    queries = ["这家科技公司发布了一款新产品，获得了国家奖。", "中国足球队", "今天天气很好", ""]
    every = np.arange(len(texts))
    batched = index.scores(index.vectors(queries))
    assert all(s.unigram_all is not None for s in batched)  # a small bank: the one-product path
    monkeypatch.setattr(retrieval.BankIndex, "FULL_PRODUCT_ENTRIES", 0)
    gathered = index.scores(index.vectors(queries))
    assert all(s.unigram_all is None for s in gathered)
    for one, other, expected in zip(batched, gathered, index.similarities(queries)):
        assert np.array_equal(one.cosines(every), other.cosines(every))  # the same sums, bit for bit
        np.testing.assert_allclose(one.cosines(every), expected, atol=1e-6)
    ids = np.array([0, 3, 7, len(texts) - 1, 2])
    dense = index.vectorizer.transform([texts[j] for j in ids]).toarray()
    np.testing.assert_allclose(index.gram(ids), dense @ dense.T, atol=1e-6)


def test_query_vectors_are_the_vectorizers_bit_for_bit():
    """``BankIndex.vectors`` counts n-grams with NumPy; the TF-IDF rows must be scikit-learn's own, to the bit,
    whitespace runs, characters the bank never saw, lone surrogates, one- and two-character texts included."""
    texts, entities = sample_bank()
    index = BankIndex(texts, entities)
    queries = texts[:40] + [
        "",
        " ",
        "  \t",
        "北京  上海\t\t广州\n\n",
        "\u3000\u3000中国",
        "\ud800北京",
        "😀😀北京😀",
        "鬣",
        "京",
        "北京",
        "ＡＢＣ abc 123",
    ]
    expected = index.vectorizer.transform(queries)
    got = index.vectors(queries)
    assert got.shape == expected.shape and got.dtype == expected.dtype == np.float32
    for part in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(got, part), getattr(expected, part)), part
    assert got[queries.index("鬣")].nnz == 0  # a character the bank never saw counts for nothing


def test_lexical_ranks_candidates_by_the_full_cosine(monkeypatch):
    import modeling.retrieval as retrieval

    monkeypatch.setattr(retrieval, "MMR_LAMBDA", 1.0)  # no diversity term: plain similarity order
    texts, entities = sample_bank()
    index = BankIndex(texts, entities)
    query = ["这家科技公司发布了一款新产品，获得了国家奖。"]  # 54 distinct bank texts share a 2-3-gram with it
    sims = index.similarities(query)[0]
    pos = [""] * len(texts)
    types = np.zeros((len(texts), 1), dtype=np.int64)
    got = rank_memories("lexical", 4, pos, types, [""], None, None, query, texts, index=index)[0].tolist()
    sharing = sorted({texts.index(t) for t in texts if long_grams(t) & long_grams(query[0])})
    assert len(sharing) > retrieval.LEXICAL_POOL * 4 + 1  # the candidate path, not the whole-bank fallback
    assert got == sorted(sharing, key=lambda j: (-sims[j], j))[:4]


def test_retrieval_keeps_blas_to_one_thread(monkeypatch):
    """The MMR gram matrix is a small product; threaded BLAS costs more than it computes on a busy machine."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    original = BankIndex.gram
    monkeypatch.setattr(
        BankIndex,
        "gram",
        lambda self, ids: (
            seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
            or original(self, ids)
        ),
    )
    with threadpool_limits(2, user_api="blas"):
        index_methods("lexical", ["张三在北京上班"], 2)
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} <= {2}  # restored after
    assert seen and all(threads <= {1} for threads in seen)


def test_smallest_set_is_the_set_smallest_picks_in_position_order():
    """``smallest_set`` (a query's best candidates, wanted by position) keeps exactly the keys ``smallest`` keeps,
    ties to the lower position, whatever the number of ties at the cut."""
    from modeling.retrieval import smallest, smallest_set

    rng = np.random.default_rng(0)
    for trial in range(300):
        keys = rng.integers(0, 1 + trial % 7, size=int(rng.integers(1, 60))).astype(np.float32)
        n = int(rng.integers(1, len(keys) + 3))
        expected = np.sort(smallest(keys[None, :], min(n, len(keys)))[0])
        assert np.array_equal(smallest_set(keys, n), expected)
