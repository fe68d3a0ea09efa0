"""Property-based tests (hypothesis) of the surfaces bad input reaches: the pipeline on raw text, the
column and CLUENER readers, the tag-scheme converters and the Space's ``tag`` handler.

Seeded (``derandomize``), with two profiles registered in conftest: ``suite`` (the default, a few
hundred examples in all) and ``long`` (10,000 examples a test), which ``benchmarks/fuzz.py`` runs.
The pipeline is fuzzed with an untrained memory network (random weights, entity retrieval over the
sample's bank): its random tags put entities everywhere, blanks and cuts included, which is what the
properties are about; they do not depend on what a model learnt."""

import json
import os
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT
from data_scripts.corpora import load_corpus
from data_scripts.features import load_tokenizer, tokenize_and_align
from data_scripts.memory_data import gold_type_matrices
from data_scripts.readers import DataFormatError, dataset_spans, read_cluener_files, read_column_files
from modeling import ChineseNERPipeline, MemoryNetConfig, MemoryNetForTokenClassification
from modeling.memory_bank import MemoryBank
from modeling.entity_spans import is_blank
from modeling.tag_schemes import SCHEMES, Span, spans_to_tags, tags_to_spans
from test_pipeline import assert_same_entities

# ---------------------------------------------------------------------------------------------
# text a user might paste: mostly CJK, ASCII and full-width, with blanks, controls, emoji, surrogates

ALPHABETS = [
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),  # printable ASCII
    st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E),  # full-width forms
    st.sampled_from(" \t\n\r\u3000\u00a0\u200b\u200d\ufeff"),  # whitespace and zero-width
    st.characters(min_codepoint=0, max_codepoint=0x1F),  # C0 controls
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
    st.sampled_from("。！？；，、…"),  # the punctuation long text is cut at
]
WEIGHTS = [40, 15, 8, 12, 5, 5, 3, 12]
CHARS = st.one_of(*[a for a, w in zip(ALPHABETS, WEIGHTS) for _ in range(w // 3 or 1)])
TEXTS = st.text(CHARS, min_size=0, max_size=3000)
SHORT_TEXTS = st.text(CHARS, min_size=0, max_size=200)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """An untrained memory network (entity retrieval, 2 memories, self-attention) over the sample's bank,
    saved to a folder: (pipeline, folder)."""
    folder = tmp_path_factory.mktemp("fuzz-model")
    corpus = load_corpus("sample", scheme="BIOS")
    tokenizer, _ = load_tokenizer(None, corpus["train"]["tokens"], folder, model_max_length=32)
    torch.manual_seed(0)
    config = MemoryNetConfig(
        id2label=dict(enumerate(corpus.label_names)), vocab_size=len(tokenizer), char_embedding_size=16,
        lstm_hidden_size=16, num_memory=2, memory_method="entity", self_attention_size=32, num_attention_heads=2,
        max_length=32,
    )  # fmt: skip
    model = MemoryNetForTokenClassification(config).eval()
    train = corpus["train"]
    enc = tokenize_and_align({"tokens": train["tokens"], "ner_tags": train["ner_tags"]}, tokenizer, 32)
    types = gold_type_matrices(corpus, corpus.tag_scheme, config.entity_types)["train"]
    bank = MemoryBank.from_sentences(enc["input_ids"], enc["labels"], types, [""] * len(types), tokenizer.get_vocab())
    model.set_memory_bank(bank)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return ChineseNERPipeline(model=model, tokenizer=tokenizer), folder


def check_entities(text: str, entities: list[dict]) -> None:
    previous_end = 0
    for e in entities:
        assert 0 <= e["start"] < e["end"] <= len(text), e
        assert text[e["start"] : e["end"]] == e["word"], e
        assert not is_blank(e["word"][0]) and not is_blank(e["word"][-1]), e  # trimmed, and never only blanks
        assert e["start"] >= previous_end, entities  # sorted, no overlap
        previous_end = e["end"]


@given(text=TEXTS)
def test_pipeline_on_any_text(random_model, text):
    ner, _ = random_model
    check_entities(text, ner(text))


@given(texts=st.lists(SHORT_TEXTS, min_size=1, max_size=6))
def test_pipeline_list_input_equals_one_by_one(random_model, texts):
    ner, _ = random_model
    together = ner(texts)
    assert len(together) == len(texts)
    for text, entities in zip(texts, together):
        check_entities(text, entities)
        assert_same_entities(entities, ner(text))  # scores up to the float noise of padding


NOT_TEXT = st.one_of(
    st.none(), st.integers(), st.floats(), st.binary(max_size=20), st.lists(st.integers(), min_size=1, max_size=3),
    st.lists(st.one_of(st.text(max_size=5), st.none()), min_size=1).filter(lambda v: None in v),
)  # fmt: skip


@given(value=NOT_TEXT)
def test_pipeline_non_text_input_gets_a_type_error(random_model, value):
    ner, _ = random_model
    with pytest.raises(TypeError, match="takes a string or a list of strings"):
        ner(value)


def test_pipeline_on_an_empty_list_answers_an_empty_list(random_model):
    """Found by fuzzing: ``ner([])`` raised IndexError from inside transformers' Pipeline."""
    ner, _ = random_model
    assert ner([]) == []


# ---------------------------------------------------------------------------------------------
# readers: well-formed files read back what was written; broken ones name their file and line

TYPES = st.sampled_from(["PER", "LOC", "ORG", "name.X"])
# a column file's token: one character that is neither a field separator nor a line break
TOKEN_CHARS = st.characters(
    blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="\ufeff\u200b\u0085"
).filter(lambda c: not c.isspace())


@st.composite
def sentences(draw, chars=TOKEN_CHARS, max_sentences=6):
    """``[(text, [Span, ...]), ...]`` with non-overlapping spans."""
    out = []
    for _ in range(draw(st.integers(1, max_sentences))):
        text = draw(st.text(chars, min_size=1, max_size=30))
        cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=6))))
        spans = [Span(draw(TYPES), a, b) for a, b in zip(cuts[::2], cuts[1::2]) if a < b]
        out.append((text, spans))
    return out


def read_back(corpus) -> list[tuple[str, list[Span]]]:
    return [
        ("".join(tokens), spans) for tokens, spans in zip(corpus["train"]["tokens"], dataset_spans(corpus["train"]))
    ]


@given(data=sentences(), scheme=st.sampled_from(SCHEMES))
def test_column_files_read_back_what_was_written(tmp_path_factory, data, scheme):
    path = tmp_path_factory.mktemp("col") / "train.txt"
    lines = []
    for text, spans in data:
        lines += [f"{c}\t{t}" for c, t in zip(text, spans_to_tags(spans, len(text), scheme))] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    assert read_back(read_column_files({"train": path}, scheme, scheme)) == data


@given(data=sentences(), line=st.integers(0, 10**6), kind=st.sampled_from(["columns", "tag"]))
def test_a_broken_column_file_names_its_line(tmp_path_factory, data, line, kind):
    path = tmp_path_factory.mktemp("col") / "train.txt"
    lines = []
    for text, spans in data:
        lines += [f"{c}\t{t}" for c, t in zip(text, spans_to_tags(spans, len(text), "BIO"))] + [""]
    rows = [k for k, row in enumerate(lines) if row]
    bad = rows[line % len(rows)]
    lines[bad] = f"{lines[bad]}\tNN" if kind == "columns" and bad != rows[0] else lines[bad].split("\t")[0] + "\tQ-PER"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        read_column_files({"train": path}, "BIO", "BIO")
    assert str(err.value).startswith(f"{path}:{bad + 1}:"), str(err.value)


CLUENER_CHARS = st.characters(blacklist_categories=("Cs",))


@given(data=sentences(chars=CLUENER_CHARS))
def test_cluener_files_read_back_what_was_written(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cluener") / "train.json"
    rows = []
    for k, (text, spans) in enumerate(data):
        label: dict = {}
        for s in spans:
            label.setdefault(s.type, {}).setdefault(text[s.start : s.end], []).append([s.start, s.end - 1])
        rows.append(json.dumps({"id": k, "text": text, "label": label}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert read_back(read_cluener_files({"train": path}, "BIO")) == data


@given(data=sentences(chars=CLUENER_CHARS), line=st.integers(0, 10**6),
       kind=st.sampled_from(["json", "outside", "surface"]))  # fmt: skip
def test_a_broken_cluener_file_names_its_line(tmp_path_factory, data, line, kind):
    path = tmp_path_factory.mktemp("cluener") / "train.json"
    rows = [json.dumps({"text": text, "label": {}}) for text, _ in data]
    bad = line % len(rows)
    text = data[bad][0]
    if kind == "json":
        rows[bad] = rows[bad][:-1]
    elif kind == "outside":
        rows[bad] = json.dumps({"text": text, "label": {"PER": {"x": [[len(text), len(text)]]}}})
    else:
        rows[bad] = json.dumps({"text": text, "label": {"PER": {text[0] + "\u2603": [[0, 0]]}}})
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        read_cluener_files({"train": path}, "BIO")
    assert str(err.value).startswith(f"{path}:{bad + 1}:"), str(err.value)


# ---------------------------------------------------------------------------------------------
# tag schemes


@given(data=sentences(max_sentences=1), source=st.sampled_from(SCHEMES), target=st.sampled_from(SCHEMES))
def test_spans_round_trip_through_every_scheme(data, source, target):
    ((text, spans),) = data
    tags = spans_to_tags(spans, len(text), source)
    assert len(tags) == len(text) and tags_to_spans(tags, source) == spans
    converted = spans_to_tags(tags_to_spans(tags, source), len(text), target)
    assert tags_to_spans(converted, target) == spans


# ---------------------------------------------------------------------------------------------
# the Space's handler: a message or a result for every text, never an exception


@pytest.fixture(scope="module")
def space_app(random_model):
    _, folder = random_model
    old = os.environ.get("NER_MODEL")
    os.environ["NER_MODEL"] = str(folder)
    sys.path.insert(0, str(ROOT / "space"))
    try:
        sys.modules.pop("app", None)
        import app
    finally:
        sys.path.remove(str(ROOT / "space"))
        if old is None:
            os.environ.pop("NER_MODEL")
        else:
            os.environ["NER_MODEL"] = old
    yield app
    sys.modules.pop("app", None)


TOO_LONG = st.text(CHARS, min_size=1, max_size=20).map(lambda t: t * (20_001 // len(t) + 1))  # over the Space's 20,000


@given(texts=st.lists(st.one_of(TEXTS, st.just(""), TOO_LONG), min_size=1, max_size=4))
def test_space_tag_answers_every_text(space_app, texts):
    status, highlighted, table, memories, heat = space_app.tag(texts)
    assert len(status) == len(highlighted) == len(table) == len(memories) == len(heat) == len(texts)
    for text, message, marked, rows in zip(texts, status, highlighted, table):
        assert isinstance(message, str) and message
        if message.startswith("⚠️"):
            assert rows == [] and marked["entities"] == []
        else:
            assert marked["text"] == text
            for word, _, start, end, _ in rows:
                assert text[start:end] == word
