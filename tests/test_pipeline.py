"""The ``chinese-ner`` pipeline: offsets into the caller's string, long text, batching, memories, loading anywhere."""

import contextlib
import json
import random
import re
import unicodedata
from types import SimpleNamespace

import pytest
import torch
from transformers import BertTokenizerFast

from conftest import ROOT, load_pipeline, run_fresh_process
from data_scripts.sample import SAMPLE_DIR
from modeling import PIPELINE_TASK, ChineseNERPipeline, MemoryNetForTokenClassification, Seq2SeqAttnTagger
from modeling.char_tokenization import encode_chars
from modeling.tag_schemes import spans_to_tags
from modeling.text_splitting import SENTENCE_END, plan_windows

MIXED = [
    "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。",
    "我在北京 iPhone 15 发布会上见到了张三😀，ＡＢＣ公司的李四也在。",
    "  \t上海市\n浦东新区的陆家嘴金融中心，2024年。",
    "",
]


@pytest.fixture(scope="module")
def memory_ner(memory_run):
    return load_pipeline(memory_run[0], MemoryNetForTokenClassification)


@pytest.fixture(scope="module")
def seq2seq_ner(seq2seq_run):
    return load_pipeline(seq2seq_run[0], Seq2SeqAttnTagger)


@pytest.fixture(scope="module")
def dev_sentences():
    """The embedded sample's sentences (train and dev, the trained models' own domain) that are one
    sentence each (no sentence mark inside), ending with 。."""
    out = []
    for split in ("train", "dev"):
        for line in (SAMPLE_DIR / f"{split}.json").read_text(encoding="utf-8").splitlines():
            text = json.loads(line)["text"].rstrip("。")
            if text and not any(ch in SENTENCE_END for ch in text) and len(text) <= 60:
                out.append(text + "。")
    return out


def check_entities(text, entities):
    for e in entities:
        assert set(e) == {"entity_group", "score", "word", "start", "end"}
        assert text[e["start"] : e["end"]] == e["word"] and e["word"]
        ends = e["word"][0] + e["word"][-1]
        assert not any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in ends), (
            f"blank end: {e['word']!r}"
        )
        assert 0.0 <= e["score"] <= 1.0
    spans = [(e["start"], e["end"]) for e in entities]
    assert spans == sorted(spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "overlapping or duplicated entities"


def shifted(entities, offset):
    return [{**e, "start": e["start"] + offset, "end": e["end"] + offset} for e in entities]


def key(entities):
    return [(e["entity_group"], e["start"], e["end"], e["word"]) for e in entities]


def assert_same_entities(got, expected):
    """The same entities, with scores equal up to the float noise of batching and padding."""
    assert key(got) == key(expected)
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in expected], abs=1e-4)


@pytest.mark.parametrize("which", ["memory_ner", "seq2seq_ner"])
def test_offsets_round_trip_on_mixed_text(which, request):
    ner = request.getfixturevalue(which)
    found = 0
    for text in MIXED:
        entities = ner(text)
        check_entities(text, entities)
        found += len(entities)
    assert found > 0, "the trained model found no entity at all"
    assert ner("") == []


@pytest.mark.parametrize("which", ["memory_ner", "seq2seq_ner"])
def test_list_input_equals_one_by_one(which, request, dev_sentences):
    ner = request.getfixturevalue(which)
    texts = MIXED + dev_sentences[:40]
    one_by_one = [ner(t) for t in texts]
    for batched in (ner(texts, batch_size=8), ner(texts)):
        assert len(batched) == len(one_by_one)
        for got, expected in zip(batched, one_by_one):
            assert_same_entities(got, expected)


def test_a_5000_character_text_loses_no_entity(memory_ner, dev_sentences):
    sentences, length = [], 0
    for s in dev_sentences * 3:
        sentences.append(s)
        length += len(s)
        if length >= 5000:
            break
    text = "".join(sentences)
    assert len(text) >= 5000

    expected, offset = [], 0
    for s, entities in zip(sentences, memory_ner(sentences, batch_size=16)):
        expected += shifted(entities, offset)
        offset += len(s)
    got = memory_ner(text, batch_size=16)
    check_entities(text, got)
    assert len(expected) > 100
    assert_same_entities(got, expected)


@pytest.mark.parametrize("which", ["memory_ner", "seq2seq_ner"])
def test_a_long_text_is_batched_by_default_with_the_same_entities(which, request, dev_sentences):
    """Without ``batch_size`` a long text's windows go through the model 32 at a time, and give
    exactly what one window at a time gives."""
    ner = request.getfixturevalue(which)
    text = "".join(dev_sentences[:60])
    calls = []
    forward = ner.model.forward

    def counting(*args, **kwargs):
        calls.append((args[0] if args else kwargs["input_ids"]).shape[0])
        return forward(*args, **kwargs)

    ner.model.forward = counting
    try:
        default = ner(text)
        batched_calls, calls[:] = list(calls), []
        one_by_one = ner(text, batch_size=1)
    finally:
        del ner.model.forward
    windows = len(plan_windows(text, ner.model.config.max_length - 2))
    assert max(batched_calls) == min(32, windows) and len(batched_calls) == -(-windows // 32)
    assert len(calls) == windows
    assert len(default) > 20
    assert_same_entities(default, one_by_one)


@contextlib.contextmanager
def window_widths(ner):
    """Records, for each forward pass of the pipeline's model, its windows' widths (tokens), ascending."""
    batches = []
    forward = ner.model.forward

    def recording(*args, **kwargs):
        batches.append(sorted(kwargs["attention_mask"].sum(dim=1).tolist()))
        return forward(*args, **kwargs)

    ner.model.forward = recording
    try:
        yield batches
    finally:
        del ner.model.forward


def test_a_list_goes_through_the_model_in_length_order_and_comes_back_in_the_callers(memory_ner, dev_sentences):
    """Texts of similar length share a batch (less padding), and each answer is its own text's."""
    texts = random.Random(3).sample(dev_sentences[:40], 40) + ["", "张三。"]
    with window_widths(memory_ner) as widths:
        got = memory_ner(texts, batch_size=8)
    flat = [w for batch in widths for w in batch]
    assert flat == sorted(flat) and len(widths) == -(-(len(texts) - 1) // 8)  # the empty text has no forward pass
    for text, entities in zip(texts, got):
        assert_same_entities(entities, memory_ner(text))


def test_a_lists_windows_are_batched_by_length_across_its_texts(memory_ner, dev_sentences, monkeypatch):
    """Texts longer than the window are read by their sentences: those of all the texts are sorted by length
    together (so a batch is not padded to another text's long sentence), and each text gets back its own."""
    rng = random.Random(11)
    width = memory_ner.model.config.max_length - 2
    long_texts = ["".join(rng.sample(dev_sentences[:80], 6)) for _ in range(6)]
    texts = long_texts + rng.sample(dev_sentences[80:120], 20)
    rng.shuffle(texts)
    windows = sum(len(plan_windows(t, width)) for t in texts)
    assert windows > len(texts) + 20  # the long texts are several windows each
    one_by_one = [memory_ner(t, batch_size=1) for t in texts]
    with window_widths(memory_ner) as batches:
        got = memory_ner(texts, batch_size=8)
    flat = [w for batch in batches for w in batch]
    assert flat == sorted(flat) and len(flat) == windows and len(batches) == -(-windows // 8)
    for entities, expected in zip(got, one_by_one):
        assert_same_entities(entities, expected)
    # a list longer than one block: sorted within each block, the same answers in the caller's order
    monkeypatch.setattr(ChineseNERPipeline, "SORT_BLOCK_BATCHES", 1)
    with window_widths(memory_ner) as batches:
        got = memory_ner(texts, batch_size=8)
    assert len(batches) > -(-windows // 8)
    for entities, expected in zip(got, one_by_one):
        assert_same_entities(entities, expected)


def test_a_long_texts_windows_go_in_length_order_and_come_back_in_text_order(memory_ner, dev_sentences):
    text = "".join(random.Random(5).sample(dev_sentences[:60], 60))
    with window_widths(memory_ner) as batches:
        got = memory_ner(text, batch_size=8, return_memories=True)
    widths = [w for batch in batches for w in batch]
    assert widths == sorted(widths) and len(set(widths)) > 5
    starts = [w["start"] for w in got["windows"]]
    assert starts == sorted(starts) and len(starts) == len(widths)
    assert_same_entities(got["entities"], memory_ner(text, batch_size=1))


def test_scores_are_computed_only_for_windows_not_tagged_all_o(memory_ner, dev_sentences):
    """A window tagged all ``O`` reports no score, so its CRF marginals are not computed; the windows that
    have entities get exactly the marginals they get alone."""
    texts = ["，。、", "１２３。"] + dev_sentences[:20]
    asked = []
    probabilities = memory_ner.model.tag_probabilities

    def recording(logits, attention_mask):
        asked.append(len(logits))
        return probabilities(logits, attention_mask)

    memory_ner.model.tag_probabilities = recording
    try:
        got = memory_ner(texts, batch_size=32)
    finally:
        del memory_ner.model.tag_probabilities
    assert got[0] == got[1] == []
    tagged = memory_ner.model.predict_tags(texts, memory_ner.tokenizer)  # each text is one window
    assert asked == [sum(any(tag != "O" for tag in tags) for tags in tagged)] and 0 < asked[0] < len(texts)
    for text, entities in zip(texts, got):
        assert_same_entities(entities, memory_ner(text))


def test_batched_pipeline_gives_the_slow_reference_entities_and_scores(memory_ner, dev_sentences):
    """On a slice of sentences, the optimised pipeline (character table, bulk encoding, 32 windows a batch,
    NumPy Viterbi and marginals) gives exactly what the unoptimised definitions give one sentence at a
    time: the tokenizer called on the sentence, pytorch-crf's own Viterbi, and the marginals as the
    gradient of pytorch-crf's log partition function."""
    from modeling.tag_schemes import tags_to_spans

    model, tokenizer = memory_ner.model, memory_ner.tokenizer
    config = model.config
    texts = dev_sentences[:48]
    got = memory_ner(texts, batch_size=32)
    expected_all = []
    for text in texts:
        enc = tokenizer([list(text)], is_split_into_words=True, add_special_tokens=False)
        ids = [tokenizer.cls_token_id, *enc["input_ids"][0], tokenizer.sep_token_id]
        assert len(ids) == len(text) + 2  # one token per character: no blank in these sentences
        input_ids = torch.tensor([ids])
        mask = torch.ones_like(input_ids)
        with torch.no_grad():
            emissions = model(input_ids, attention_mask=mask).logits
        chars = emissions[:, 1:-1].float()
        path = model.crf.crf.decode(chars, mask=torch.ones(chars.shape[:2], dtype=torch.bool))[0]  # pytorch-crf
        probs = model.crf.log_space_marginals(emissions, mask)[0, 1:-1]
        tags = [config.id2label[t] for t in path]
        expected_all.append(
            [
                {
                    "entity_group": span.type,
                    "score": float(probs[torch.arange(span.start, span.end), path[span.start : span.end]].mean()),
                    "word": text[span.start : span.end],
                    "start": span.start,
                    "end": span.end,
                }
                for span in tags_to_spans(tags, config.tag_scheme, strict=False)
            ]
        )
    assert sum(map(len, expected_all)) > 20
    for entities, expected in zip(got, expected_all):
        assert_same_entities(entities, expected)


@contextlib.contextmanager
def local_tagger(ner, words):
    """The pipeline's model replaced by a tagger that marks each occurrence of ``words`` (type -> list of
    strings) and nothing else: its tags never depend on where a window starts or ends, so however the
    pipeline cuts a text, it must give back what reading the text whole gives."""
    config, tokenizer = ner.model.config, ner.tokenizer
    patterns = [(etype, w) for etype, ws in words.items() for w in ws]

    def forward(input_ids, attention_mask=None, **kwargs):
        tags = torch.full_like(input_ids, config.label2id["O"])
        for b, row in enumerate(input_ids.tolist()):
            n = int(attention_mask[b].sum()) - 2
            chars = "".join(tokenizer.convert_ids_to_tokens(row[1 : n + 1]))
            spans = [(etype, m.start(), m.end()) for etype, w in patterns for m in re.finditer(re.escape(w), chars)]
            tags[b, 1 : n + 1] = torch.tensor([config.label2id[t] for t in spans_to_tags(spans, n, config.tag_scheme)])
        logits = 30.0 * torch.nn.functional.one_hot(tags, config.num_labels).float()
        return SimpleNamespace(tags=tags, logits=logits)

    ner.model.forward = forward
    try:
        yield
    finally:
        del ner.model.forward


def test_stride_windows_give_what_reading_the_text_whole_gives(memory_ner):
    """One "sentence" of ~1,700 characters (clauses joined by ，, no sentence mark) is read by overlapping
    windows. With a tagger that only matches words, reading it by windows must give exactly the words
    the test put in, as reading the whole text in one window does: none lost at a cut, none doubled where
    windows overlap, offsets into the whole text."""
    config = memory_ner.model.config
    etypes = sorted({label.split("-", 1)[1] for label in config.label2id if label != "O"})[:2]
    chars = [t for t in memory_ner.tokenizer.get_vocab() if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    chars.sort()
    words = {
        etypes[0]: ["".join(chars[k : k + 3]) for k in range(0, 12, 3)],
        etypes[1]: ["".join(chars[k : k + 4]) for k in range(12, 28, 4)],
    }
    filler = chars[28:228]  # no character of a word, so the words occur only where the test puts them
    rng = random.Random(0)
    text, gold = "", []
    while len(text) < 1700:
        text += "".join(rng.choice(filler) for _ in range(rng.randint(2, 12))) + ("，" if rng.random() < 0.2 else "")
        etype = rng.choice(etypes)
        word = rng.choice(words[etype])
        gold.append((etype, len(text), len(text) + len(word), word))
        text += word
    text += "。"
    window = config.max_length - 2
    assert len(text) > 8 * window and not any(ch in SENTENCE_END for ch in text[:-1])
    with local_tagger(memory_ner, words):
        for stride in (None, window // 3, 5):  # the default (half a window), one that does not divide it, a small one
            got = memory_ner(text, stride=stride, batch_size=8)
            check_entities(text, got)
            assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in got] == gold, f"stride {stride}"
        # the same text read whole, in one window: the tagger finds exactly the test's words
        config.max_length = len(text) + 2
        try:
            whole = memory_ner(text)
        finally:
            config.max_length = window + 2
    assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in whole] == gold
    crossing = [g for g in gold if any(g[1] < cut < g[2] for cut in range(window, len(text), window // 2))]
    assert len(crossing) >= 5, "too few words cross a window's end: the test would not exercise the merge"


def tagged_windows(ner, text, windows):
    """What ``postprocess`` receives for ``text`` read by ``windows``: ``[((start, end, own_start, own_end),
    spans), ...]`` with spans ``(type, start, end)`` in window offsets, each character's score 0.5."""
    scheme, label2id = ner.model.config.tag_scheme, ner.model.config.label2id
    outputs = []
    for (start, end, own_start, own_end), spans in windows:
        ids = [label2id[t] for t in spans_to_tags(spans, end - start, scheme)]
        outputs.append(
            {
                "window": (start, end, own_start, own_end),
                "text": text,
                "lengths": torch.tensor([[end - start + 2]]),
                "tags": torch.tensor([[-100, *ids, -100]]),
                "tag_scores": torch.full((1, end - start + 2), 0.5),
            }
        )
    return ner.postprocess(outputs)


def test_entities_from_two_stride_windows_never_overlap(memory_ner):
    """Window [0, 12) owns characters 0-7 and window [6, 20) owns 8-19. The first window tags [5, 9)
    (middle 6, its own), the second [8, 11) (middle 9, its own): they overlap at 8. The first lies 3
    characters from its cut at 12, the second 2 from its cut at 6, so the first is kept."""
    text = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉"
    etype = memory_ner.model.config.id2label[1].split("-", 1)[1]  # the first entity tag's type
    left, right = ((0, 12, 0, 8), [(etype, 5, 9)]), ((6, 20, 8, 20), [(etype, 2, 5)])
    got = tagged_windows(memory_ner, text, [left, right])
    assert [(e["start"], e["end"]) for e in got] == [(5, 9)]
    # the second entity kept when it is the farther from its cut: now 3 characters from 6, and the first 2 from 12
    left, right = ((0, 12, 0, 8), [(etype, 6, 10)]), ((6, 20, 8, 20), [(etype, 3, 6)])
    got = tagged_windows(memory_ner, text, [left, right])
    assert [(e["start"], e["end"]) for e in got] == [(9, 12)]
    check_entities(text, got)


@pytest.mark.parametrize(
    "text, span, expected",
    [
        ("张三\n\n在", (0, 4), "张三"),  # trailing newlines
        ("张三\x00在", (0, 3), "张三"),  # a control character
        ("\u200b 张三在", (0, 4), "张三"),  # zero-width and space before it
        ("李\t四在", (0, 3), "李\t四"),  # in the middle: kept, the entity is what the model tagged
        ("   \n\t  ", (0, 6), None),  # only blanks: no entity at all
        ("张\ud800在", (0, 2), "张"),  # a lone surrogate at the end
    ],
)
def test_an_entity_never_starts_or_ends_with_blanks(memory_ner, text, span, expected):
    etype = memory_ner.model.config.id2label[1].split("-", 1)[1]  # the first entity tag's type
    got = tagged_windows(memory_ner, text, [((0, len(text), 0, len(text)), [(etype, *span)])])
    check_entities(text, got)
    assert [e["word"] for e in got] == ([expected] if expected else [])


def test_a_lone_surrogate_is_an_unknown_character(memory_ner):
    """Half of a UTF-16 pair (a bad JSON decode) is tagged like any unknown character, in place."""
    tokenizer = memory_ner.tokenizer
    enc = encode_chars(tokenizer, [list("张\ud800三"), list("张\udfff")])
    assert enc["input_ids"][0][1:4] == [
        tokenizer.convert_tokens_to_ids("张"),
        tokenizer.unk_token_id,
        tokenizer.convert_tokens_to_ids("三"),
    ]
    assert enc["input_ids"][1][2] == tokenizer.unk_token_id
    for text in ("abc\ud800def", "\udc00", "林晓梅在\ud83d北京"):
        check_entities(text, memory_ner(text))
    for got, expected in zip(memory_ner(["abc\ud800def", "北京"]), [memory_ner("abc\ud800def"), memory_ner("北京")]):
        assert_same_entities(got, expected)


def test_memories_and_their_attention(memory_ner, dev_sentences):
    window = memory_ner.model.config.max_length - 2
    k = next(k for k in range(1, len(dev_sentences)) if len("".join(dev_sentences[:k])) > window)
    text = "".join(dev_sentences[:k])
    out = memory_ner(text, return_memories=True)
    assert_same_entities(out["entities"], memory_ner(text))
    assert len(out["windows"]) == k  # the text is longer than a window: one window per sentence
    for window in out["windows"]:
        n = window["end"] - window["start"]
        assert len(window["memories"]) == 2  # num_memory of the trained model
        for memory in window["memories"]:
            assert len(memory["tags"]) == len(memory["text"]) > 0
            for e in memory["entities"]:
                assert memory["text"][e["start"] : e["end"]] == e["word"]
            attention = memory["attention"]
            assert len(attention) == n and all(len(row) == len(memory["text"]) for row in attention)
        # against the model's own M_j: each row's mass lies on the memory's tokens ([CLS] ... [SEP]),
        # none on its padding, and the pipeline returns exactly the rows' character columns
        enc = encode_chars(memory_ner.tokenizer, [list(text[window["start"] : window["end"]])])
        memory_ids = torch.tensor([[m["bank_index"] for m in window["memories"]]])
        with torch.no_grad():
            full = memory_ner.model(
                torch.tensor(enc["input_ids"]),
                attention_mask=torch.tensor(enc["attention_mask"]),
                memory_ids=memory_ids,
                output_attentions=True,
            ).memory_attentions[0]
        for j, memory in enumerate(window["memories"]):
            m = len(memory["text"])
            rows = full[j, 1 : n + 1]
            assert torch.allclose(rows[:, : m + 2].sum(-1), torch.ones(n), atol=1e-5)
            assert torch.allclose(rows[:, 1 : m + 1], torch.tensor(memory["attention"]), atol=1e-5)


def test_bad_arguments_get_clear_errors(memory_ner, seq2seq_ner):
    with pytest.raises(ValueError, match="num_beams applies to the seq2seq tagger"):
        memory_ner("张三", num_beams=4)
    with pytest.raises(ValueError, match="return_memories=True needs a memory-network model"):
        seq2seq_ner("张三", return_memories=True)
    with pytest.raises(TypeError, match="a string or a list of strings"):
        memory_ner(42)
    with pytest.raises(TypeError, match=r"unexpected arguments \['aggregation_strategy'\]"):
        memory_ner("张三", aggregation_strategy="simple")  # the stock token-classification option does not apply
    check_entities(MIXED[0], seq2seq_ner(MIXED[0], num_beams=3))  # beams are a decoding option of the seq2seq tagger


def test_saved_folder_declares_the_pipeline_and_loads_in_a_fresh_offline_process(memory_run, memory_ner, tmp_path):
    folder, _ = memory_run
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"][PIPELINE_TASK]["impl"] == "pipeline_ner.ChineseNERPipeline"
    assert (folder / "pipeline_ner.py").exists()
    script = (
        "import json, sys\n"
        "from transformers import pipeline\n"
        f"ner = pipeline({PIPELINE_TASK!r}, model=sys.argv[1], trust_remote_code=True)\n"
        "print(sys.modules[type(ner).__module__].__file__)\n"
        "print(json.dumps(ner(json.loads(sys.argv[2])), ensure_ascii=False))\n"
    )
    module_file, answer = run_fresh_process(script, str(folder), json.dumps(MIXED), cwd=tmp_path)[-2:]
    assert not module_file.startswith(str(ROOT)), module_file  # the folder's copy of the code, not this checkout's
    answer = json.loads(answer)
    assert len(answer) == len(MIXED)
    for got, expected in zip(answer, memory_ner(MIXED)):
        assert_same_entities(got, expected)


def test_an_int8_quantised_model_runs_in_the_pipeline_with_nearly_the_same_entities(memory_run, dev_sentences):
    """The README's CPU option: int8 dynamic quantisation of the LSTM and linear layers, then the same pipeline."""
    model = MemoryNetForTokenClassification.from_pretrained(memory_run[0]).eval()
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)
    assert type(quantized.encoder.lstm).__module__.startswith(
        "torch.ao.nn.quantized.dynamic"
    )  # the LSTM really is int8
    assert type(model.encoder.lstm) is torch.nn.LSTM  # and the float model is left as it was
    tokenizer = BertTokenizerFast.from_pretrained(memory_run[0])
    texts = dev_sentences[:60]
    exact = ChineseNERPipeline(model=model, tokenizer=tokenizer)(texts)
    fast = ChineseNERPipeline(model=quantized, tokenizer=tokenizer)(texts)
    for text, entities in zip(texts, fast):
        check_entities(text, entities)
    same = sum(key(a) == key(b) for a, b in zip(exact, fast))
    assert same >= 0.9 * len(texts), f"only {same} of {len(texts)} sentences keep their entities under int8"


def test_bfloat16_autocast_runs_the_pipeline_with_nearly_the_same_entities(memory_run, dev_sentences, monkeypatch):
    """The README's other CPU option: the pipeline under bfloat16 autocast. The layers run in bfloat16, the CRF
    still decodes in float32, and the entities stay nearly the same."""
    model = MemoryNetForTokenClassification.from_pretrained(memory_run[0]).eval()
    ner = ChineseNERPipeline(model=model, tokenizer=BertTokenizerFast.from_pretrained(memory_run[0]))
    texts = dev_sentences[:60]
    exact = ner(texts)
    seen = []
    decode = model.crf.decode
    monkeypatch.setattr(
        model.crf, "decode", lambda emissions, mask: seen.append(emissions.dtype) or decode(emissions, mask)
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = ner(texts)
    assert seen and set(seen) == {torch.bfloat16}  # the emissions really were computed in bfloat16
    for text, entities in zip(texts, fast):
        check_entities(text, entities)
        assert all(0.0 <= e["score"] <= 1.0 for e in entities)
    same = sum(key(a) == key(b) for a, b in zip(exact, fast))
    assert same >= 0.9 * len(texts), f"only {same} of {len(texts)} sentences keep their entities under bfloat16"


def test_return_memories_shows_a_memory_as_written(memory_run):
    """The bank keeps each sentence as written: the memory comes back with its case and blanks, not as the
    lower-cased ids (with U+FFFD for the blanks) the model reads."""
    written = "银杉电子在深圳市宝安区发布了新款 Pad 2，售价 3999 元。"
    model = MemoryNetForTokenClassification.from_pretrained(memory_run[0], memory_method="entity").eval()
    bank = model.memory_bank
    target = bank.sentence_texts().index("银杉电子在深圳市宝安区发布了新款\ufffdpad\ufffd2，售价\ufffd3999\ufffd元。")
    assert bank.written_texts([target]) == [written]
    # a bank of the sentence and two without its entities: entity retrieval brings it for a query naming them
    others = [i for i, text in enumerate(bank.sentence_texts()) if "银杉" not in text and "深圳" not in text][:2]
    model.remove_memories([i for i in range(len(bank)) if i not in (target, *others)])
    ner = ChineseNERPipeline(model=model, tokenizer=BertTokenizerFast.from_pretrained(memory_run[0]))
    out = ner("银杉电子在深圳市宝安区又发布了新手机。", return_memories=True)
    assert written in [memory["text"] for memory in out["windows"][0]["memories"]]
    added = ner.add_memories(
        ["Ｐad 3 在 上海 发布。"], entities=[[{"start": 8, "end": 10, "entity_group": "address"}]]
    )
    assert model.memory_bank.written_texts(added) == ["Ｐad 3 在 上海 发布。"]
