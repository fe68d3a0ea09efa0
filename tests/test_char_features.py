"""The BiLSTM's input features (modeling/char_features.py) on a hand-made sentence and dictionary, exactly."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertTokenizerFast

from conftest import run_fresh_process
from data_scripts.encoder_features import bigram_keys, lexicon_in_ids
from modeling import MemoryNetConfig, MemoryNetForTokenClassification
from modeling.char_features import FIRST_WORD_ROW, NO_WORD, OTHER_WORD, suggested_frequency
from modeling.char_tokenization import SPECIAL_TOKENS, encode_chars

CHARS = list("北京大学生在上海市读书了")
# 北京 is a prefix of 北京大学; 了 is a one-character word; 在 is in no word; 上海市 only in the dictionary
DICTIONARY = {"北京": 100.0, "北京大学": 50.0, "大学": 80.0, "大学生": 30.0, "学生": 90.0, "上海": 70.0,
              "上海市": 20.0, "读书": 40.0, "了": 500.0, "中国": 10.0}  # fmt: skip


def make_tokenizer(folder) -> BertTokenizerFast:
    path = Path(folder) / "vocab.txt"
    path.write_text("\n".join(SPECIAL_TOKENS + CHARS + ["中", "国"]) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(path))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("vocab"))


def model_with(tokenizer, train_texts, dictionary=DICTIONARY, **config):
    ids = encode_chars(tokenizer, [list(t) for t in train_texts])["input_ids"]
    lexicon = lexicon_in_ids(dictionary, tokenizer, ids)
    keys = bigram_keys(ids, len(tokenizer), 1)
    cfg = MemoryNetConfig(
        id2label={0: "O", 1: "B-LOC", 2: "I-LOC", 3: "S-LOC"}, vocab_size=len(tokenizer), char_embedding_size=4,
        lstm_hidden_size=4, num_memory=0, use_self_attention=False, bigram_vocab_size=len(keys),
        bigram_embedding_size=3, lexicon_size=len(lexicon.word_ids), lexicon_word_length=lexicon.word_length,
        use_softword=True, softword_embedding_size=2, use_word_sets=True, word_vocab_size=lexicon.num_rows,
        word_embedding_size=2, word_set_size=2, **config,
    )  # fmt: skip
    model = MemoryNetForTokenClassification(cfg).eval()
    model.encoder.features.set_bigrams(keys)
    model.encoder.features.set_lexicon(lexicon.word_ids, lexicon.freqs, lexicon.rows)
    return model, lexicon


def test_softword_and_word_sets_of_a_hand_made_sentence(tokenizer):
    model, lexicon = model_with(tokenizer, ["北京大学生在上海读书了"])
    features = model.encoder.features
    text = "北京大学生在上海市读书了"
    ids = encode_chars(tokenizer, [list(text)])["input_ids"][0]
    softword, rows, weights = features.text_features(tuple(ids))
    # the route of the highest sum of log(f) - log(total) a word (a character in no word: f = 1), by hand:
    # 北京|大学生 -5.79 beats 北京大学|生 -9.88, 北京|大学|生 -11.70, 北京|大|学生 -11.59;
    # 上海市 -3.90 beats 上海|市 -9.55
    # [CLS] 北 京 大 学 生 在 上 海 市 读 书 了 [SEP]
    assert softword.tolist() == [4, 1, 3, 1, 2, 3, 4, 1, 2, 3, 1, 3, 4, 4]
    assert math.log(sum(lexicon.freqs)) == pytest.approx(math.log(990))

    row = {w: lexicon.rows[k] for k, w in enumerate(lexicon.word_ids)}
    word = {"".join(tokenizer.convert_ids_to_tokens(list(w))): row[w] for w in lexicon.word_ids}
    assert word["上海市"] == OTHER_WORD and word["北京"] >= FIRST_WORD_ROW  # not in the training text / in it
    # 学 (position 4) Begins 学生, is in the Middle of 大学生, Ends 北京大学 and 大学, and is no word alone
    got = {j: sorted(r for r, w in zip(rows[4, j].tolist(), weights[4, j].tolist()) if w) for j in range(4)}
    assert got == {0: [word["学生"]], 1: [word["大学生"]], 2: sorted([word["北京大学"], word["大学"]]), 3: [NO_WORD]}
    z = 90 + 30 + 50 + 80  # the frequencies of the four sets' words: weights 4 z(w) / Z
    weight = {r: w for j in range(3) for r, w in zip(rows[4, j].tolist(), weights[4, j].tolist()) if w}
    assert weight[word["学生"]] == pytest.approx(4 * 90 / z) and weight[word["大学"]] == pytest.approx(4 * 80 / z)
    assert weights[4, 3, 0] == 1.0  # the empty S set reads the no-word row
    # 在 (position 6): in no word, every set empty
    assert rows[6, :, 0].tolist() == [NO_WORD] * 4 and weights[6, :, 0].tolist() == [1.0] * 4
    # 了 (position 12): a one-character word, its S set
    assert rows[12, 3, 0] == word["了"] and weights[12, 3, 0] == pytest.approx(4.0)


@pytest.mark.parametrize(
    "dictionary",
    [DICTIONARY, {"北京": 5.0, "京大": 5.0, "北": 2.0, "大": 2.0, "大学": 7.0, "学生": 7.0, "生在": 3.0}],
    ids=["hand-made", "ties"],
)
def test_softword_is_jiebas_segmentation_on_the_same_dictionary(tokenizer, dictionary, tmp_path):
    """jieba (``cut``, no HMM) with the same dictionary file segments 300 random texts of the vocabulary's
    characters as softword does. In the second, 北京|大 and 北|京大 score the same (jieba takes the longer first
    word), and 学 and 生 start words without being words (jieba then never takes them alone)."""
    import jieba

    path = tmp_path / "dict.txt"
    path.write_text("".join(f"{w} {f:g}\n" for w, f in dictionary.items()), encoding="utf-8")
    segmenter = jieba.Tokenizer(dictionary=str(path))
    segmenter.tmp_dir = str(tmp_path)
    chars = CHARS + ["中", "国"]
    rng = np.random.default_rng(0)
    texts = ["北京大", "大学生", *("".join(rng.choice(chars, size=n)) for n in rng.integers(1, 25, size=300))]
    features = model_with(tokenizer, texts, dictionary)[0].encoder.features
    for text, ids in zip(texts, encode_chars(tokenizer, [list(t) for t in texts])["input_ids"]):
        expected = [4]  # [CLS]
        for word in segmenter.cut(text, HMM=False):
            expected += [4] if len(word) == 1 else [1] + [2] * (len(word) - 2) + [3]
        assert features.text_features(tuple(ids))[0].tolist() == expected + [4], text
    assert list(segmenter.cut("北京大", HMM=False)) == ["北京", "大"]  # the tie, as jieba breaks it


def test_a_model_built_from_its_config_reads_no_words_until_its_lexicon_is_set(tokenizer):
    """``from_config`` / ``Model(config)``: the lexicon buffers hold padding, which is no word; the model still
    tags (every character a word alone, every set empty)."""
    trained, _ = model_with(tokenizer, ["北京大学生在上海读书了"])
    model = MemoryNetForTokenClassification(trained.config).eval()
    ids = encode_chars(tokenizer, [CHARS])["input_ids"][0]
    softword, rows, weights = model.encoder.features.text_features(tuple(ids))
    assert softword.tolist() == [4] * len(ids)  # S: each token its own word
    assert (rows[:, :, 0] == NO_WORD).all() and (weights[:, :, 0] == 1.0).all() and not weights[:, :, 1:].any()
    assert model(torch.tensor([ids])).logits.shape == (1, len(ids), 4)


def test_unknown_and_blank_characters_and_a_window_cut_through_a_word(tokenizer):
    model, lexicon = model_with(tokenizer, ["北京大学生在上海读书了"])
    features = model.encoder.features
    # a blank and an unknown character end a word: 北 京 <blank> 大 学 <unknown> 生
    ids = encode_chars(tokenizer, [list("北京 大学😀生")])["input_ids"][0]
    softword, rows, _ = features.text_features(tuple(ids))
    assert softword.tolist() == [4, 1, 3, 4, 1, 3, 4, 4, 4]
    # a window that starts inside 北京大学 (cut after 北京) sees only the words within it
    ids = encode_chars(tokenizer, [list("大学生")])["input_ids"][0]
    assert features.text_features(tuple(ids))[0].tolist() == [4, 1, 2, 3, 4]
    # the same characters give the same features in a longer text (training and the pipeline agree)
    batch = encode_chars(tokenizer, [list("北京大学生"), list("北京大学生在上海市读书了")])
    width = max(map(len, batch["input_ids"]))
    input_ids = torch.tensor([r + [0] * (width - len(r)) for r in batch["input_ids"]])
    mask = (input_ids != 0).long()
    softword, word_rows, weights = features.lexicon_features(input_ids, mask)
    alone = features.text_features(tuple(batch["input_ids"][0]))
    assert softword[0, :7].tolist() == alone[0].tolist() and softword[0, 7:].tolist() == [0] * (width - 7)
    assert torch.equal(word_rows[0, :7], torch.as_tensor(alone[1]))


def test_bigrams_of_the_training_split_and_the_unknown_bucket(tokenizer):
    model, _ = model_with(tokenizer, ["北京大学"])
    features = model.encoder.features
    ids = torch.tensor([encode_chars(tokenizer, [list("北京上海")])["input_ids"][0]])
    rows = features.bigram_index(ids, torch.ones_like(ids)).tolist()[0]
    keys = features.bigram_keys.tolist()
    v = len(tokenizer)
    expected = []
    for a, b in zip(ids[0].tolist(), ids[0].tolist()[1:] + [0]):
        expected.append(keys.index(a * v + b) + 2 if a * v + b in keys else 1)
    assert rows == expected and rows[1] >= 2 and rows[2] == 1  # 北京 seen in train, 京上 not
    assert expected[0] >= 2  # [CLS] 北 was a training bigram too


def test_bigram_and_word_vectors_from_the_characters_vectors(tokenizer):
    model, lexicon = model_with(tokenizer, ["北京大学", "京北大学"])
    features = model.encoder.features
    chars = torch.randn(len(tokenizer), 4, generator=torch.Generator().manual_seed(0))
    before = {
        name: t.weight.clone() for name, t in (("b", features.bigram_embeddings), ("w", features.word_embeddings))
    }
    counts = features.init_from_char_embeddings(chars)
    v, keys = len(tokenizer), features.bigram_keys.tolist()
    ids = dict(zip("北京大学", encode_chars(tokenizer, [list("北京大学")])["input_ids"][0][1:5]))
    row = {pair: keys.index(ids[pair[0]] * v + ids[pair[1]]) + 2 for pair in ("北京", "京北", "大学")}
    bigrams = features.bigram_embeddings.weight
    assert counts["bigrams"] == len(keys) and torch.equal(bigrams[row["北京"]], bigrams[row["京北"]])  # same mean
    assert not torch.equal(bigrams[row["北京"]], bigrams[row["大学"]])
    assert torch.equal(bigrams[:2], before["b"][:2])  # padding and unknown keep theirs
    assert abs(float(bigrams[2:].std()) - float(before["b"][2:].std())) < 1e-4  # the rows' scale
    words = features.word_embeddings.weight
    assert torch.equal(words[:FIRST_WORD_ROW], before["w"][:FIRST_WORD_ROW]) and counts["words"] == len(
        {r for r in lexicon.rows if r >= FIRST_WORD_ROW}
    )
    # a word's vector is its characters' mean vector, projected by the char table's principal components (scaled)
    from sklearn.decomposition import PCA

    word_row = next(r for ids_, r in zip(lexicon.word_ids, lexicon.rows) if list(ids_) == [ids["北"], ids["京"]])
    expected = (
        PCA(n_components=2).fit(chars.numpy()).transform(chars[[ids["北"], ids["京"]]].mean(0, keepdim=True).numpy())
    )
    cosine = torch.nn.functional.cosine_similarity(words[word_row], torch.as_tensor(expected[0]).float(), dim=0)
    assert abs(float(cosine) - 1.0) < 1e-5


W2V_TEXTS = ["北京大学生在上海读书了", "大学生读书", "北京上海"] * 20
W2V_IN_A_PROCESS = """
import json, sys
sys.path[:0] = ["tests", "."]
from test_char_features import W2V_TEXTS, make_tokenizer, model_with
from data_scripts.encoder_features import word2vec_vectors
from modeling.char_tokenization import encode_chars
tokenizer = make_tokenizer(sys.argv[1])
model, _ = model_with(tokenizer, W2V_TEXTS)
ids = encode_chars(tokenizer, [list(t) for t in W2V_TEXTS])["input_ids"]
vectors = word2vec_vectors(model.encoder.features, ids, seed=0)
print(json.dumps({name: [rows, vecs.tolist()] for name, (rows, vecs) in vectors.items()}))
"""


def test_word2vec_vectors_are_the_same_in_every_process(tmp_path):
    """The same seed gives the same vectors in every run: nothing on the way (the vocabulary's order, the start
    vectors) may depend on Python's string hashes, which are salted per process."""
    out = []
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        proc = subprocess.run([sys.executable, "-c", W2V_IN_A_PROCESS, str(tmp_path)], cwd=Path(__file__).parents[1],
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert out[0] == out[1] and set(out[0]) == {"bigrams", "words"}


def test_word2vec_vectors_of_the_training_split(tokenizer):
    texts = W2V_TEXTS
    model, lexicon = model_with(tokenizer, texts)
    features = model.encoder.features
    ids = encode_chars(tokenizer, [list(t) for t in texts])["input_ids"]
    # the words word2vec reads: the softword route's, a character in no word as -id ([CLS], 在, [SEP])
    row = {"".join(tokenizer.convert_ids_to_tokens(list(w))): r for w, r in zip(lexicon.word_ids, lexicon.rows)}
    cls, sep, zai = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "在"])
    expected = [-cls, row["北京"], row["大学生"], -zai, row["上海"], row["读书"], row["了"], -sep]
    assert features.words_of(ids[:1]) == [expected]
    assert features.words_of(ids) == features.words_of(ids, batch_size=7)

    from data_scripts.encoder_features import word2vec_vectors

    before = {"bigrams": features.bigram_embeddings.weight.clone(), "words": features.word_embeddings.weight.clone()}
    vectors = word2vec_vectors(features, ids, seed=0)
    again = word2vec_vectors(features, ids, seed=0)
    seen_words = {r for text in features.words_of(ids) for r in text if r >= FIRST_WORD_ROW}
    assert sorted(vectors["words"][0]) == sorted(seen_words) and len(vectors["bigrams"][0]) == len(
        features.bigram_keys
    )  # every training bigram, every word of the route
    assert all(np.array_equal(vectors[n][1], again[n][1]) for n in vectors)  # one worker, seeded: repeatable
    for name, table in (("bigrams", features.bigram_embeddings), ("words", features.word_embeddings)):
        rows, vecs = vectors[name]
        assert features.set_embedding_rows(name, rows, vecs) == len(rows)
        weight, kept = table.weight, sorted(set(range(table.num_embeddings)) - set(rows))
        assert torch.equal(weight[kept], before[name][kept])  # padding, unknown, no word, other words: as they were
        assert float(weight[rows].std()) == pytest.approx(float(before[name][rows].std()), rel=1e-4)  # same spread
        cosine = torch.nn.functional.cosine_similarity(weight[rows], torch.as_tensor(vecs).float(), dim=1)
        assert torch.allclose(cosine, torch.ones(len(rows)), atol=1e-5)  # the skip-gram vectors, scaled


FRESH = """
import builtins, io, json, sys
real_open = io.open
def no_dictionary(file, *args, **kwargs):
    if str(file).replace("\\\\", "/").endswith("jieba/dict.txt"):
        raise PermissionError(13, "Permission denied", str(file))
    return real_open(file, *args, **kwargs)
builtins.open = io.open = no_dictionary
import jieba, os
try:
    open(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"))
    sys.exit("the dictionary could still be read")
except PermissionError:
    pass
import torch
from transformers import AutoModelForTokenClassification
model = AutoModelForTokenClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    print(json.dumps(model(ids, attention_mask=torch.ones_like(ids)).logits.tolist()))
"""


@pytest.mark.slow
def test_a_saved_folder_tags_the_same_in_a_fresh_process_that_cannot_read_jiebas_dictionary(tokenizer, tmp_path):
    model, _ = model_with(tokenizer, ["北京大学生在上海读书了"])
    ids = encode_chars(tokenizer, [list("北京大学生在上海市读书了")])["input_ids"]
    with torch.no_grad():
        expected = model(torch.tensor(ids)).logits
    model.save_pretrained(tmp_path / "model")
    lines = run_fresh_process(FRESH, str(tmp_path / "model"), json.dumps(ids), cwd=tmp_path)
    assert torch.allclose(torch.tensor(json.loads(lines[-1])), expected, atol=1e-6)


def test_projected_features_in_torch_and_in_numpy_for_onnx(tokenizer, tmp_path):
    """``feature_projection_size``: the concatenated features through one linear layer, the same in the NumPy
    features that the ONNX graphs take, and saved with the model."""
    from modeling.char_features_numpy import CharFeaturesArrays
    from modeling.onnx_export import features_arrays

    model, _ = model_with(tokenizer, ["北京大学生在上海读书了"], feature_projection_size=3)
    features = model.encoder.features
    assert features.output_size == 3 and model.encoder.lstm.input_size == 4 + 3
    with torch.no_grad():
        features.projection.bias.uniform_(-1.0, 1.0)  # a trained bias is not zero
    whole, _ = model_with(tokenizer, ["北京大学生在上海读书了"])
    whole.encoder.features.load_state_dict(features.state_dict(), strict=False)  # the same tables, no projection
    rows = encode_chars(tokenizer, [list("北京大学生在上海市读书了"), list("在上海")])["input_ids"]
    ids = torch.tensor([row + [0] * (len(rows[0]) - len(row)) for row in rows])  # the second row padded
    mask = (ids != 0).long()
    with torch.no_grad():
        projected, unprojected = features(ids, mask), whole.encoder.features(ids, mask)
    assert unprojected.shape[-1] == 3 + 2 + 4 * 2
    weight, bias = features.projection.weight, features.projection.bias
    assert torch.allclose(projected, unprojected @ weight.T + bias, atol=1e-6)
    in_numpy = CharFeaturesArrays(features_arrays(features))(ids.numpy(), mask.numpy())
    assert np.allclose(in_numpy, projected.numpy(), atol=1e-5)
    model.save_pretrained(tmp_path / "model")
    loaded = MemoryNetForTokenClassification.from_pretrained(tmp_path / "model").eval()
    assert loaded.config.feature_projection_size == 3
    with torch.no_grad():
        assert torch.equal(loaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)


def test_the_seq2seq_tagger_reads_the_same_features(tokenizer):
    """Both models build their BiLSTM from one class, features included."""
    from modeling import Seq2SeqAttnConfig, Seq2SeqAttnTagger

    ids = encode_chars(tokenizer, [list("北京大学生")])["input_ids"]
    keys = bigram_keys(ids, len(tokenizer), 1)
    config = Seq2SeqAttnConfig(
        id2label={0: "O", 1: "B-LOC", 2: "I-LOC", 3: "E-LOC"}, vocab_size=len(tokenizer), char_embedding_size=4,
        lstm_hidden_size=4, decoder_hidden_size=8, tag_embedding_size=4, bigram_vocab_size=len(keys),
        bigram_embedding_size=3,
    )  # fmt: skip
    model = Seq2SeqAttnTagger(config).eval()
    model.encoder.features.set_bigrams(keys)
    assert model.encoder.lstm.input_size == 4 + 3
    out = model(torch.tensor(ids), return_tags=True)
    assert out.tags.shape == (1, 7)


def test_the_frequency_that_makes_a_taught_word_one_word(tokenizer):
    """jieba's ``suggest_freq``: the total times the shares of the best cut into parts, plus one."""
    ids = dict(zip(CHARS + ["中", "国"], encode_chars(tokenizer, [CHARS + ["中", "国"]])["input_ids"][0][1:-1]))
    words = {tuple(ids[c] for c in w): k for k, w in enumerate(DICTIONARY)}
    freqs = np.array(list(DICTIONARY.values()))
    assert freqs.sum() == 990
    # 北京|了: 990 * (100 / 990) * (500 / 990) = 50.5
    assert suggested_frequency((ids["北"], ids["京"], ids["了"]), words, freqs) == 51
    # the word itself is no part: 北京大学 -> 北京|大学, 990 * (100 / 990) * (80 / 990) = 8.1
    assert suggested_frequency(tuple(ids[c] for c in "北京大学"), words, freqs) == 9
    # two characters in no word: 990 * (1 / 990) ** 2 < 1; one character: 1
    assert suggested_frequency((ids["在"], ids["书"]), words, freqs) == 1
    assert suggested_frequency((ids["在"],), words, freqs) == 1


def test_a_taught_word_is_a_word_of_the_segmentation_and_of_the_word_sets(tokenizer):
    model, lexicon = model_with(tokenizer, ["北京大学生在上海读书了"])
    features = model.encoder.features
    ids = encode_chars(tokenizer, [list("北京了在")])["input_ids"][0]
    before = [x.copy() for x in features.text_features(tuple(ids))]
    with torch.no_grad():
        plain = features(torch.tensor([ids]))
    assert before[0].tolist() == [4, 1, 3, 4, 4, 4]  # [CLS] 北京|了|在 [SEP]
    vector = torch.tensor([0.5, -2.0])
    taught = tuple(ids[1:4])
    features.set_taught_words([taught], vector[None])
    assert features.taught_words == [taught]
    softword, rows, weights = features.text_features(tuple(ids))
    assert softword.tolist() == [4, 1, 2, 3, 4, 4]  # 北京了 (frequency 51) is one word
    new_row = features.word_embeddings.num_embeddings  # the rows of taught words follow the table's
    # 了 Ends 北京了 (51) and is 了 (500): weights 4 z / Z
    assert rows[3, 2, 0] == new_row and weights[3, 2, 0] == pytest.approx(4 * 51 / 551)
    assert weights[3, 3, 0] == pytest.approx(4 * 500 / 551)
    with torch.no_grad():
        out = features(torch.tensor([ids]))
    e_set = slice(3 + 2 + 2 * 2, 3 + 2 + 3 * 2)  # after the bigram (3) and softword (2) parts: B, M, E, S sets of 2
    assert torch.allclose(out[0, 3, e_set], 4 * 51 / 551 * vector)
    assert features.lexicon_rows([ids[1:3], taught]) == [lexicon.rows[lexicon.word_ids.index(tuple(ids[1:3]))], 0]
    features.set_taught_words([])
    assert [x.tolist() for x in features.text_features(tuple(ids))] == [x.tolist() for x in before]
    with torch.no_grad():
        assert torch.equal(features(torch.tensor([ids])), plain)
