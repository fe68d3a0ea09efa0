"""One token per character: offsets exact for mixed text, labels aligned, truncation as documented."""

import pytest

from data_scripts.features import BERT_VOCAB, build_char_vocab, load_tokenizer, tokenize_and_align
from modeling.char_tokenization import SPACE_TOKEN, encode_chars

MIXED = "我买了 iPhone 15，花了１２００元😀！Ａ\t"


@pytest.fixture(scope="module")
def bert_tokenizer(data_dir):
    tok, source = load_tokenizer(str(data_dir / BERT_VOCAB))
    return tok


def test_one_token_per_character_mixed_text(bert_tokenizer):
    enc = encode_chars(bert_tokenizer, [list(MIXED)])
    ids = enc["input_ids"][0]
    assert len(ids) == len(MIXED) + 2 and enc["num_chars"] == [len(MIXED)]
    tokens = bert_tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    by_char = dict(zip(range(len(MIXED)), tokens[1:-1]))  # token k + 1 is character k
    assert by_char[MIXED.index("我")] == "我"
    assert by_char[3] == SPACE_TOKEN and by_char[len(MIXED) - 1] == SPACE_TOKEN  # space, tab keep their place
    assert [by_char[i] for i in range(4, 10)] == list("iphone")  # Latin letters, lower-cased, one each
    assert by_char[MIXED.index("😀")] == "[UNK]"  # [UNK] keeps the emoji's offset
    assert by_char[MIXED.index("１")] in ("１", "[UNK]")  # full-width digits: one token each
    assert by_char[MIXED.index("元")] == "元" and by_char[MIXED.index("！")] == "！"


def test_predictions_map_back_to_exact_offsets(bert_tokenizer):
    """A tag on token k + 1 marks character k: spans over tokens are spans over the string."""
    text = "张伟用 iPhone 15 拍了照"
    # offsets written by hand: 张伟用 is 0-3, the space 3, iPhone 4-10, the space 10, 15 11-13,
    # the space 13, 拍了照 14-17
    enc = encode_chars(bert_tokenizer, [list(text)])
    tokens = bert_tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    assert len(tokens) == len(text) + 2
    assert tokens[0 + 1 : 3 + 1] == list("张伟用")
    assert tokens[4 + 1 : 10 + 1] == list("iphone") and tokens[3 + 1] == tokens[10 + 1] == SPACE_TOKEN
    assert (
        tokens[11 + 1 : 13 + 1] == ["1", "5"]
        and tokens[13 + 1] == SPACE_TOKEN
        and tokens[14 + 1 : 17 + 1] == list("拍了照")
    )


def test_labels_aligned(bert_tokenizer):
    tokens = [list("张三在 Paris"), list("李四")]
    tags = [[1, 2, 0, 0, 3, 4, 4, 4, 4], [1, 2]]
    out = tokenize_and_align({"tokens": tokens, "ner_tags": tags}, bert_tokenizer, max_length=64)
    for ids, labels, t in zip(out["input_ids"], out["labels"], tags):
        assert len(ids) == len(labels) == len(t) + 2
        assert labels[0] == labels[-1] == -100 and labels[1:-1] == t


def test_truncation_policy(bert_tokenizer):
    """max_length counts [CLS] and [SEP]: the first max_length - 2 characters are kept, labels likewise."""
    tokens = [list("一二三四五六七八九十")]
    out = tokenize_and_align({"tokens": tokens, "ner_tags": [list(range(10))]}, bert_tokenizer, max_length=6)
    assert out["num_chars"] == [4]
    assert bert_tokenizer.convert_ids_to_tokens(out["input_ids"][0]) == ["[CLS]", "一", "二", "三", "四", "[SEP]"]
    assert out["labels"][0] == [-100, 0, 1, 2, 3, -100]
    with pytest.raises(ValueError, match="at least 3"):
        encode_chars(bert_tokenizer, tokens, max_length=2)


def test_corpus_vocabulary_without_shared_data(tmp_path):
    """Offline, without ../shared/data: a vocab.txt built from the corpus serves the same code path."""
    corpus = [list("Hello 世界，ÉCOLE 😀"), list("北京欢迎你")]
    tok, source = load_tokenizer(str(build_char_vocab(corpus, tmp_path / "vocab.txt")))
    enc = encode_chars(tok, corpus)
    for chars, ids in zip(corpus, enc["input_ids"]):
        tokens = tok.convert_ids_to_tokens(ids[1:-1])
        assert len(tokens) == len(chars)
        for ch, t in zip(chars, tokens):
            # the space gets the placeholder; every other character its own (lower-cased, accent-stripped) token
            expected = SPACE_TOKEN if ch.isspace() else {"É": "e"}.get(ch, ch.lower())
            assert t == expected, (ch, t)


def test_plan_windows_owns_every_character_once():
    """Long text: sentences first, then overlapping windows; every character owned by exactly one window."""
    from modeling.text_splitting import plan_windows

    text = "甲" * 150 + "。" + "乙" * 20 + "！" + "丙" * 61
    windows = plan_windows(text, 62)
    owned = [k for _, _, a, b in windows for k in range(a, b)]
    assert owned == list(range(len(text)))
    assert all(e - s <= 62 and s <= a < b <= e for s, e, a, b in windows)
    assert (151, 172, 151, 172) in windows  # a sentence that fits is its own window
    assert plan_windows("短句", 62) == [(0, 2, 0, 2)]


def test_encoding_never_rebuilds_the_vocabulary(bert_tokenizer, monkeypatch):
    """get_vocab() builds a 21,128-entry dict; the pipeline encodes per window, so it must not be called per call."""
    expected_space = bert_tokenizer.get_vocab()[SPACE_TOKEN]
    calls = []
    original = type(bert_tokenizer).get_vocab
    monkeypatch.setattr(type(bert_tokenizer), "get_vocab", lambda self: calls.append(1) or original(self))
    for _ in range(5):
        enc = encode_chars(bert_tokenizer, [list("张三 在北京")], 64)
    assert calls == []
    assert enc["input_ids"][0][3] == expected_space  # the space still gets [unused1]


def _in_context_ids(tokenizer, text: str) -> list[int]:
    """The definition: the tokenizer on the whole text as words of one character, each character's first id."""
    from modeling.char_tokenization import space_token_id

    readable = [tokenizer.unk_token if "\ud800" <= ch <= "\udfff" else ch for ch in text]
    enc = tokenizer([readable], is_split_into_words=True, add_special_tokens=False)
    ids = [None] * len(text)
    for token_id, word in zip(enc["input_ids"][0], enc.word_ids(0)):
        if word is not None and ids[word] is None:
            ids[word] = token_id
    space = space_token_id(tokenizer)
    return [tokenizer.cls_token_id] + [space if i is None else i for i in ids] + [tokenizer.sep_token_id]


def test_character_table_gives_the_tokenizers_own_ids_and_tokenizes_each_character_once(data_dir, monkeypatch):
    import random

    from modeling.char_tokenization import char_table

    rng = random.Random(3)
    blocks = [(0x20, 0x250), (0x300, 0x370), (0x2000, 0x2070), (0x3000, 0x3100), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF)]
    blocks += [(0x1F600, 0x1F650), (0xD800, 0xD810), (0, 0x20)]
    texts = [MIXED, "é\u0301ﬁ①Ⅻ", ""] + [
        "".join(chr(rng.randrange(*rng.choice(blocks))) for _ in range(rng.randint(1, 60))) for _ in range(200)
    ]
    bert_tokenizer, _ = load_tokenizer(str(data_dir / BERT_VOCAB))  # its own table: other tests taught the shared one
    table = char_table(bert_tokenizer)
    assert table.ids == {}
    enc = encode_chars(bert_tokenizer, [list(t) for t in texts])
    assert enc["input_ids"] == [_in_context_ids(bert_tokenizer, t) for t in texts]
    assert set("".join(texts)) <= set(table.ids)

    calls = []
    original = type(bert_tokenizer).__call__
    monkeypatch.setattr(
        type(bert_tokenizer), "__call__", lambda self, *a, **k: calls.append(a) or original(self, *a, **k)
    )
    again = encode_chars(bert_tokenizer, [list(t) for t in texts[::-1]])
    assert calls == [] and again["input_ids"] == enc["input_ids"][::-1]  # known characters: no tokenizer call
    encode_chars(bert_tokenizer, [list("我买" + chr(0x10400))])
    assert len(calls) == 1 and calls[0][0] == [[chr(0x10400)]]  # only the new character goes to the tokenizer
    assert char_table(bert_tokenizer) is table


def test_character_table_follows_added_tokens(tmp_path):
    tok, _ = load_tokenizer(str(build_char_vocab([list("张三在北京")], tmp_path / "vocab.txt")))
    before = encode_chars(tok, [list("张三在上海")])["input_ids"][0]
    assert before[4] == tok.unk_token_id
    tok.add_tokens(["上"])
    after = encode_chars(tok, [list("张三在上海")])["input_ids"][0]
    assert after[4] == tok.convert_tokens_to_ids("上") != tok.unk_token_id
    with pytest.raises(ValueError, match="single characters"):
        encode_chars(tok, [["张三"]])
