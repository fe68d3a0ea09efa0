"""Teaching a model entities by name (``add_entities``): the dictionary file and its errors, the memories the
memory network writes for the entries, removal, persistence in a fresh process, and forced longest matching."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from conftest import ROOT, run_fresh_process

sys.path.insert(0, str(ROOT))

from modeling import MemoryNetConfig, MemoryNetForTokenClassification, Seq2SeqAttnTagger  # noqa: E402
from modeling.char_features import FIRST_WORD_ROW, OTHER_WORD  # noqa: E402
from modeling.char_tokenization import encode_chars  # noqa: E402
from modeling.entity_dictionary import (  # noqa: E402
    DictionaryMatcher,
    EntityFileError,
    force_matches,
    keep_taught_entities,
    keep_taught_tag_ids,
    longest_matches,
    taught_as_read,
    read_entity_file,
)
from modeling.tag_schemes import tags_to_spans  # noqa: E402

TYPES = ["company", "name", "scene"]
TEXT = "小王子又一次来到羽松湾，见到了白鹭集团的人。"
ENTRIES = {"小王子": "name", "羽松湾": "scene", "白鹭集团": "company"}


def test_a_dictionary_file_is_read_in_order_with_blank_and_comment_lines_skipped(tmp_path):
    path = tmp_path / "names.tsv"
    path.write_text("# my names\n羽松湾\tscene\n\n小王子\tname\r\n羽松湾\tscene\n", encoding="utf-8")
    assert list(read_entity_file(path, TYPES).items()) == [("羽松湾", "scene"), ("小王子", "name")]


@pytest.mark.parametrize(
    "content, message",
    [
        ("小王子\tname\n羽松湾 scene\n", r"names.tsv:2: expected 'string<TAB>type', got 1"),
        (
            "小王子\tname\n羽松湾\tplace\n",
            r"names.tsv:2: unknown entity type 'place'; the model's types are company, name",
        ),
        ("小王子\tname\n\tscene\n", r"names.tsv:2: the entity string is empty"),
        ("  \tscene\n", r"names.tsv:1: the entity string is empty"),
        ("小王子 \tname\n", r"names.tsv:1: the entity string '小王子 ' begins or ends with a blank"),
        (
            "小王子\tname\n\n羽松湾\tscene\n小王子\tscene\n",
            r"names.tsv:4: '小王子' is given as scene here and as name at .*names.tsv:1",
        ),
        ("小王子\tname\tPER\n", r"names.tsv:1: expected 'string<TAB>type', got 3"),
    ],
)
def test_a_bad_dictionary_line_is_named_by_file_and_line(tmp_path, content, message):
    path = tmp_path / "names.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EntityFileError, match=message):
        read_entity_file(path, TYPES)


def test_forced_matching_takes_the_longest_string_then_the_earlier():
    dictionary = {"南京": "LOC", "南京市": "LOC", "市长": "PER", "长江大桥": "LOC", "江大": "ORG", "京市长": "PER"}
    text = "南京市长江大桥"
    matches = DictionaryMatcher().matches(text, dictionary)
    assert sorted(matches) == [
        (0, 2, "LOC"),
        (0, 3, "LOC"),
        (1, 4, "PER"),
        (2, 4, "PER"),
        (3, 7, "LOC"),
        (4, 6, "ORG"),
    ]
    # 长江大桥 (4) first; then 南京市 and 京市长 (3) overlap each other, not it: the earlier, 南京市
    assert longest_matches(matches) == [(0, 3, "LOC"), (3, 7, "LOC")]
    assert longest_matches([(2, 4, "B"), (0, 2, "A"), (1, 3, "C")]) == [(0, 2, "A"), (2, 4, "B")]
    assert longest_matches([(0, 2, "A"), (1, 4, "B")]) == [(1, 4, "B")]  # the longer wins over the earlier
    model = [
        {"entity_group": "PER", "score": 0.9, "word": "市长", "start": 2, "end": 4},
        {"entity_group": "ORG", "score": 0.8, "word": "桥", "start": 6, "end": 7},
    ]
    forced = force_matches(text, model, matches)
    assert [(e["word"], e["entity_group"], e["score"]) for e in forced] == [
        ("南京市", "LOC", 1.0),
        ("长江大桥", "LOC", 1.0),
    ]
    # a model entity that overlaps no match stays
    kept = {"entity_group": "PER", "score": 0.7, "word": "张", "start": 0, "end": 1}
    assert force_matches("张在南京", [kept], DictionaryMatcher().matches("张在南京", dictionary))[0] is kept


@pytest.fixture
def taught(memory_run):
    """The sample memory network with entity retrieval, in a pipeline."""
    folder, _ = memory_run
    model = MemoryNetForTokenClassification.from_pretrained(folder, memory_method="entity").eval()
    return pipeline("chinese-ner", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))


def retrieved(ner, text: str) -> list[int]:
    enc = encode_chars(ner.tokenizer, [list(text)], ner.model.config.max_length)
    ids = torch.tensor(enc["input_ids"])
    return ner.model.retrieve_memories(ids, torch.ones_like(ids)).tolist()[0]


def test_each_entry_becomes_a_memory_that_entity_retrieval_finds(taught):
    model = taught.model
    size = len(model.memory_bank)
    templates = model.entity_templates()
    assert taught.add_entities(ENTRIES) == ENTRIES
    assert len(model.memory_bank) == size + 3 == model.config.memory_bank_size
    assert model.num_sentence_memories == size
    texts = model.memory_bank.written_texts(range(size, size + 3))
    for (string, etype), text, row in zip(ENTRIES.items(), texts, range(size, size + 3)):
        template, tags, (a, b) = templates[etype]
        assert text == template[:a] + string + template[b:]  # the template sentence with the entry in its place
        labels = [model.config.id2label[t] for t in model.memory_bank.labels[row].tolist() if t != -100]
        assert labels == tags[:a] + ["B-" + etype] + ["I-" + etype] * (len(string) - 1) + tags[b:]
    # a query with an entry's string retrieves that entry's memory first
    assert retrieved(taught, "我们在羽松湾看日出。")[0] == size + 1
    out = taught("我们在羽松湾看日出。", return_memories=True)
    assert out["windows"][0]["memories"][0]["text"] == texts[1]


def test_the_alone_form_writes_the_string_by_itself(taught):
    size = len(taught.model.memory_bank)
    taught.add_entities({"羽松湾": "scene"}, memory_form="alone")
    assert taught.model.memory_bank.written_texts([size]) == ["羽松湾"]
    with pytest.raises(ValueError, match="memory_form must be one of"):
        taught.add_entities({"羽松": "scene"}, memory_form="sentence")


def test_add_then_remove_gives_the_original_entities_back(taught):
    before = taught([TEXT, "市教育局宣布，今年秋季起全市中小学将推广午间阅读。"])
    bank_before = taught.model.memory_bank.input_ids.clone()
    taught.add_entities(ENTRIES)
    taught.model.config.taught_entities_only = False  # the whole reading with the memories
    assert taught(TEXT) != before[0]  # the memories change what it reads (a check that adding did something)
    taught.model.config.taught_entities_only = True
    taught.remove_entities(["白鹭集团", "小王子"])
    assert taught.added_entities == {"羽松湾": "scene"}
    taught.remove_entities("羽松湾")
    assert taught.added_entities == {} and taught.model.config.added_entities == []
    assert torch.equal(taught.model.memory_bank.input_ids, bank_before)
    assert taught([TEXT, "市教育局宣布，今年秋季起全市中小学将推广午间阅读。"]) == before
    with pytest.raises(KeyError, match="not among the added entities"):
        taught.remove_entities(["羽松湾"])


def test_of_the_reading_with_taught_memories_only_the_taught_entities_are_kept():
    text = "小王子去了羽松湾和白鹭集团"
    own = ["O", "B-name", "I-name", "O", "O", "O", "O", "O", "O", "B-company", "I-company", "O", "O"]
    read = ["B-name", "I-name", "I-name", "S-scene", "O", "B-name", "I-name", "I-name", "O"] + ["B-company",
            "I-company", "I-company", "I-company"]  # fmt: skip
    # 小王子 (name) and 白鹭集团 (company) are taught as read: they replace what overlaps them; 羽松湾 is taught as
    # a scene but read as a name, and 去 is no taught entity: both stay as the model read them without memories
    tags, from_read = keep_taught_entities(text, own, read, "BIOS", ENTRIES)
    assert tags == ["B-name", "I-name", "I-name", "O", "O", "O", "O", "O", "O", "B-company", "I-company",
                    "I-company", "I-company"]  # fmt: skip
    assert from_read == [True] * 3 + [False] * 6 + [True] * 4
    assert keep_taught_entities(text, own, own, "BIOS", ENTRIES) is None  # no taught entity read: the own reading
    # the same on tag ids, as the model and the ONNX pipeline merge them
    id2label = dict(enumerate(sorted(set(own + read))))
    label2id = {label: i for i, label in id2label.items()}
    ids, from_ids = keep_taught_tag_ids(text, [label2id[t] for t in own], [label2id[t] for t in read], id2label,
                                        "BIOS", ENTRIES)  # fmt: skip
    assert [id2label[i] for i in ids] == tags and from_ids == from_read


def test_taught_entities_are_matched_as_the_model_reads_text():
    # the model reads text rebuilt from token ids (lower case): an entry's string is taken from its own memory
    texts = ["我在iphone店", "羽松湾"]
    tags = [["O", "O", "B-company"] + ["I-company"] * 6, ["B-scene", "I-scene", "I-scene"]]
    added = {"iPhone店": "company", "羽松湾": "scene"}
    assert taught_as_read(texts, tags, added, "BIOS") == {"iphone店": "company", "羽松湾": "scene"}


def test_the_model_reads_a_text_with_and_without_the_taught_memories(swap_run):
    # the model trained with the entity swap reads its memories' labels: the memories change what it reads
    model = MemoryNetForTokenClassification.from_pretrained(swap_run[0]).eval()
    tokenizer = AutoTokenizer.from_pretrained(swap_run[0])
    texts = [TEXT, "我们在羽松湾看日出。", "小王子和白鹭集团", "市教育局宣布，今年秋季起全市中小学将推广午间阅读。"]
    model.add_entities(ENTRIES, tokenizer)
    enc = encode_chars(tokenizer, [list(t) for t in texts], model.config.max_length)
    width = max(map(len, enc["input_ids"]))
    ids = torch.tensor([row + [0] * (width - len(row)) for row in enc["input_ids"]])
    mask = torch.tensor([row + [0] * (width - len(row)) for row in enc["attention_mask"]])
    with torch.no_grad():
        got = model(ids, attention_mask=mask).tags
        model.config.taught_entities_only = False
        read = model(ids, attention_mask=mask).tags
        own = model(ids, attention_mask=mask, memory_ids=model.retrieve_memories(ids, mask, sentences_only=True)).tags
    assert (model.retrieve_memories(ids, mask, sentences_only=True) < model.num_sentence_memories).all()
    assert (model.retrieve_memories(ids, mask)[:3] >= model.num_sentence_memories).any(dim=1).all()
    assert not torch.equal(read, own)  # the two readings differ, so the merge is put to the test
    labels = model.config.id2label
    for k, text in enumerate(texts):
        n = len(text)
        merged = keep_taught_entities(text, [labels[int(t)] for t in own[k, 1 : n + 1]],
                                      [labels[int(t)] for t in read[k, 1 : n + 1]], model.config.tag_scheme,
                                      ENTRIES)  # fmt: skip
        expected = merged[0] if merged else [labels[int(t)] for t in own[k, 1 : n + 1]]
        assert [labels[int(t)] for t in got[k, 1 : n + 1]] == expected


def test_the_dictionary_is_checked_against_the_models_types_and_itself(taught):
    with pytest.raises(EntityFileError, match="unknown entity type 'PER'; the model's types are address, book"):
        taught.add_entities({"张三": "PER"})
    taught.add_entities([("小王子", "name")])
    assert taught.add_entities([("小王子", "name")]) == {}  # the same entry again: nothing new
    with pytest.raises(EntityFileError, match=r"already added with another type: '小王子' \(name, given as scene\)"):
        taught.add_entities([("小王子", "scene")])
    with pytest.raises(EntityFileError, match="longer than the model's window"):
        taught.add_entities({"长" * 70: "name"})
    assert taught.added_entities == {"小王子": "name"}


def test_sentences_added_after_entities_go_before_the_entities_memories(taught):
    model = taught.model
    size = len(model.memory_bank)
    taught.add_entities(ENTRIES)
    (index,) = taught.add_memories(
        ["小王子去了羽松湾看日出。"], entities=[[{"start": 0, "end": 3, "entity_group": "name"}]]
    )
    assert index == size and model.num_sentence_memories == size + 1
    assert model.memory_bank.written_texts([size + 1])[0].startswith("小王子")  # the first entry's memory moved down
    with pytest.raises(ValueError, match="use remove_entities"):
        taught.remove_memories([size + 1])
    taught.remove_entities(list(ENTRIES))
    assert len(model.memory_bank) == size + 1 and model.memory_bank.written_texts([size]) == [
        "小王子去了羽松湾看日出。"
    ]


def test_forcing_the_dictionary_in_the_pipeline(taught):
    taught.add_entities({"白鹭": "scene", "白鹭集团": "company", "小王子": "name"})
    forced = taught(TEXT, force_entities=True)
    assert [(e["word"], e["entity_group"], e["score"]) for e in forced if e["score"] == 1.0] == [
        ("小王子", "name", 1.0),
        ("白鹭集团", "company", 1.0),
    ]
    assert all(not (e["start"] < 19 and e["end"] > 15) for e in forced if e["score"] < 1.0)


@pytest.mark.parametrize("kind", ["plain", "seq2seq"])
def test_a_model_without_memory_keeps_the_dictionary_for_forced_matching(memory_run, seq2seq_run, tmp_path, kind):
    if kind == "plain":  # the sample model's config without memory (untrained: only what it does with the entries)
        folder = memory_run[0]
        config = MemoryNetConfig.from_pretrained(folder, num_memory=0, memory_bank_size=0)
        model = MemoryNetForTokenClassification(config)
    else:
        model = Seq2SeqAttnTagger.from_pretrained(seq2seq_run[0])
        folder = seq2seq_run[0]
    ner = pipeline("chinese-ner", model=model.eval(), tokenizer=AutoTokenizer.from_pretrained(folder))
    types = model.config.id2label
    etype = sorted({t.split("-", 1)[1] for t in types.values() if t != "O"})[0]
    before = ner(TEXT)
    ner.add_entities({"羽松湾": etype})
    assert ner(TEXT) == before  # nothing reads it in context
    assert [(e["word"], e["entity_group"]) for e in ner(TEXT, force_entities=True) if e["word"] == "羽松湾"] == [
        ("羽松湾", etype)
    ]
    ner.save_pretrained(tmp_path / "saved")
    assert type(model).from_pretrained(tmp_path / "saved").added_entities == {"羽松湾": etype}


LOAD_AND_TAG = textwrap.dedent("""
    import json, sys
    from transformers import pipeline
    ner = pipeline("chinese-ner", model=sys.argv[1], trust_remote_code=True)
    out = ner(sys.argv[2], return_memories=True)
    print(json.dumps({"added": ner.added_entities, "size": len(ner.model.memory_bank),
                      "first_memory": out["windows"][0]["memories"][0]["text"], "entities": out["entities"],
                      "forced": ner(sys.argv[2], force_entities=True)}, ensure_ascii=False))
    ner.remove_entities(list(ner.added_entities))
    print(json.dumps(ner(sys.argv[2]), ensure_ascii=False))
""")


@pytest.mark.slow
def test_the_dictionary_survives_save_and_load_in_a_fresh_process(taught, tmp_path):
    size = len(taught.model.memory_bank)
    original = taught(TEXT)
    taught.add_entities(ENTRIES)
    expected = taught(TEXT, return_memories=True)
    forced = taught(TEXT, force_entities=True)
    taught.save_pretrained(tmp_path / "taught")
    line, after_removal = run_fresh_process(LOAD_AND_TAG, str(tmp_path / "taught"), TEXT, cwd=tmp_path)[-2:]
    result = json.loads(line)
    assert result["added"] == ENTRIES and list(result["added"]) == list(ENTRIES)  # in the order added
    assert result["size"] == size + 3
    assert result["first_memory"] == expected["windows"][0]["memories"][0]["text"]
    assert result["entities"] == json.loads(json.dumps(expected["entities"]))
    assert result["forced"] == json.loads(json.dumps(forced))
    assert json.loads(after_removal) == json.loads(json.dumps(original))


def test_taught_entities_enter_the_encoders_lexicon_with_their_types_vector(lexicon_run, tmp_path):
    folder, _ = lexicon_run
    model = MemoryNetForTokenClassification.from_pretrained(folder).eval()
    ner = pipeline("chinese-ner", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    features, texts = model.encoder.features, [TEXT, "我们在羽松湾看日出。"]
    before = ner(texts)
    ner.add_entities(ENTRIES)
    tagged = ner(texts)
    ids = {s: tuple(encode_chars(ner.tokenizer, [list(s)])["input_ids"][0][1:-1]) for s in ENTRIES}
    assert features.taught_words == list(ids.values())
    # each reads the mean vector of the lexicon words that are entities of its type in the labelled sentences
    size, labels = model.num_sentence_memories, model.config.id2label
    words = {etype: [] for etype in ENTRIES.values()}
    for text, row in zip(model.memory_bank.written_texts(range(size)), model.memory_bank.labels[:size].tolist()):
        tags = [labels[t] for t in row if t != -100]
        for span in tags_to_spans(tags, model.config.tag_scheme, strict=False):
            if span.type in words:
                string = list(text[span.start : span.end])
                words[span.type].append(encode_chars(ner.tokenizer, [string])["input_ids"][0][1:-1])
    table, means = features.word_embeddings.weight, 0
    for k, etype in enumerate(ENTRIES.values()):
        rows = [r for r in features.lexicon_rows(words[etype]) if r >= FIRST_WORD_ROW]
        means += bool(rows)  # a type none of whose entities is a lexicon word reads the other-word row
        assert torch.allclose(features.taught_vectors[k], table[rows].mean(0) if rows else table[OTHER_WORD])
    assert means >= 1
    # 羽松湾 is one word of the segmentation of the second text: B M E after [CLS] 我们在
    text_ids = encode_chars(ner.tokenizer, [list(texts[1])])["input_ids"][0]
    assert features.text_features(tuple(text_ids))[0][4:7].tolist() == [1, 2, 3]
    model.config.taught_entities_in_lexicon = False  # the lexicon the model was trained with
    ner(texts)
    assert features.taught_words == []
    model.config.taught_entities_in_lexicon = True
    assert ner(texts) == tagged
    model.save_pretrained(tmp_path / "taught")
    loaded = MemoryNetForTokenClassification.from_pretrained(tmp_path / "taught").eval()
    again = pipeline("chinese-ner", model=loaded, tokenizer=ner.tokenizer)
    assert again(texts) == tagged and loaded.encoder.features.taught_words == features.taught_words
    ner.remove_entities(list(ENTRIES))
    assert ner(texts) == before and features.taught_words == []  # set on the next reading
