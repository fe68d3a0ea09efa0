"""The editable memory: sentences added to (or removed from) a trained model's bank change what it
retrieves, with no retraining, and survive save_pretrained -> from_pretrained in a fresh process;
raw-text inference retrieves with the config's method (lexical / entity included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from modeling import MemoryNetForTokenClassification  # noqa: E402
from modeling.char_tokenization import encode_chars  # noqa: E402

NEW = "小王子去了羽松湾看日出。"  # two made-up entities no sample sentence has
NEW_ENTITIES = [{"start": 0, "end": 3, "entity_group": "name"}, {"start": 5, "end": 8, "entity_group": "scene"}]
QUERY = "小王子又一次来到羽松湾。"


def retrieved(model, tokenizer, text: str) -> list[int]:
    enc = encode_chars(tokenizer, [list(text)], model.config.max_length)
    ids = torch.tensor(enc["input_ids"])
    return model.retrieve_memories(ids, torch.ones_like(ids)).tolist()[0]


@pytest.fixture
def entity_model(memory_run):
    folder, _ = memory_run
    model = MemoryNetForTokenClassification.from_pretrained(folder, memory_method="entity").eval()
    return model, AutoTokenizer.from_pretrained(folder)


def test_added_memories_are_retrieved_and_removed_ones_are_not(entity_model):
    model, tokenizer = entity_model
    size = len(model.memory_bank)
    assert retrieved(model, tokenizer, QUERY)  # before: some bank sentences, none of them new
    (added,) = model.add_memories([NEW], entities=[NEW_ENTITIES], tokenizer=tokenizer)
    assert added == size and len(model.memory_bank) == size + 1 == model.config.memory_bank_size
    assert model.memory_bank.sentence_texts()[added] == NEW
    tags = [model.config.id2label[t] for t in model.memory_bank.labels[added].tolist() if t != -100]
    assert tags == ["B-name", "I-name", "I-name", "O", "O", "B-scene", "I-scene", "I-scene", "O", "O", "O", "O"]
    assert retrieved(model, tokenizer, QUERY)[0] == added  # it labels both of the query's entity strings
    assert added not in retrieved(model, tokenizer, NEW)  # never the query's own text
    model.remove_memories([added])
    assert len(model.memory_bank) == size and added not in retrieved(model, tokenizer, QUERY)


def test_add_memories_rejects_bad_input_with_a_clear_message(entity_model):
    model, tokenizer = entity_model
    with pytest.raises(ValueError, match="2 characters but 1 tags"):
        model.add_memories(["张三"], tags=[["B-name"]], tokenizer=tokenizer)
    with pytest.raises(ValueError, match="not among the model's labels"):
        model.add_memories(["张三"], tags=[["B-PER", "I-PER"]], tokenizer=tokenizer)
    with pytest.raises(ValueError, match="either tags"):
        model.add_memories(["张三"], tokenizer=tokenizer)
    with pytest.raises(ValueError, match="bank indices must lie in"):
        model.remove_memories([len(model.memory_bank)])


LOAD_AND_TAG = textwrap.dedent("""
    import json, sys
    from transformers import pipeline
    ner = pipeline("chinese-ner", model=sys.argv[1], trust_remote_code=True)
    out = ner(sys.argv[2], return_memories=True)
    bank = ner.model.memory_bank
    print(json.dumps({"size": len(bank), "last": bank.sentence_texts()[-1], "method": ner.model.config.memory_method,
                      "memories": [m["text"] for m in out["windows"][0]["memories"]]}, ensure_ascii=False))
""")


@pytest.mark.slow
def test_added_memories_survive_save_and_load_in_a_fresh_process(entity_model, tmp_path):
    model, tokenizer = entity_model
    ner = pipeline("chinese-ner", model=model, tokenizer=tokenizer)
    size = len(model.memory_bank)
    ner.add_memories([NEW], entities=[NEW_ENTITIES])
    out = tmp_path / "extended"
    ner.save_pretrained(out)
    (tmp_path / "tag.py").write_text(LOAD_AND_TAG, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "tag.py", str(out), QUERY], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["size"] == size + 1 and result["last"] == NEW and result["method"] == "entity"
    assert result["memories"][0] == NEW  # raw-text inference in the fresh process retrieves by entity strings


@pytest.mark.parametrize("method", ["lexical", "entity"])
def test_raw_text_inference_retrieves_with_the_configs_method(memory_run, method):
    folder, _ = memory_run
    model = MemoryNetForTokenClassification.from_pretrained(folder, memory_method=method).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = model.memory_bank.sentence_texts()
    query = texts[3][:-1] + "！"  # the bank sentence 3 but for its last character
    index = model.bank_index()
    expected = index.similarities([query])[0].argmax()
    memories = pipeline("chinese-ner", model=model, tokenizer=tokenizer)(query, return_memories=True)["windows"][0][
        "memories"
    ]
    if method == "lexical":
        assert memories[0]["bank_index"] == expected == 3
    else:  # entity: the first memory labels one of the query's substrings as an entity
        first = memories[0]
        strings = {e["word"] for e in first["entities"]}
        assert any(s in query for s in strings if len(s) >= 2)
