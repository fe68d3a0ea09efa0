"""ONNX export and serving: the graphs give the model's own emission scores, and the ONNX Runtime pipeline, in a
process that cannot import torch, the torch pipeline's entities."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from modeling import MemoryNetConfig, MemoryNetForTokenClassification  # noqa: E402

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def emissions_by_onnx(folder, model, input_ids, attention_mask) -> np.ndarray:
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"))
    head = ort.InferenceSession(str(folder / "head.onnx"))
    hidden = encoder.run(None, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})[0]
    feeds = {"hidden": hidden, "attention_mask": attention_mask.numpy()}
    if model.config.num_memory:
        ids, mask, tags = model.memory_bank.gather(model.retrieve_memories(input_ids, attention_mask))
        b, n, width = ids.shape
        flat = {"input_ids": ids.view(b * n, width).numpy(), "attention_mask": mask.view(b * n, width).numpy()}
        feeds.update(memory_hidden=encoder.run(None, flat)[0].reshape(b, n, width, -1), memory_tag_ids=tags.numpy())
    wanted = {i.name for i in head.get_inputs()}
    return head.run(None, {k: v for k, v in feeds.items() if k in wanted})[0]


@pytest.mark.parametrize("memory", [True, False])
def test_the_onnx_graphs_give_the_models_emissions(memory_run, tmp_path, memory):
    if memory:
        model = MemoryNetForTokenClassification.from_pretrained(memory_run[0], memory_method="entity")
    else:  # the plain BiLSTM-CRF: the sample config without memory or self-attention (untrained)
        config = MemoryNetConfig.from_pretrained(memory_run[0], num_memory=0, memory_bank_size=0,
                                                 use_self_attention=False)  # fmt: skip
        model = MemoryNetForTokenClassification(config)
    model.eval()
    model.export_onnx(tmp_path / "onnx")
    assert not model.training  # the exporter leaves the model as it found it
    generator = torch.Generator().manual_seed(0)
    for batch, length in ((1, 9), (3, 20), (32, 60)):
        input_ids = torch.randint(10, model.config.vocab_size, (batch, length), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, length // 2 :] = 0  # rows of other lengths
        with torch.no_grad():
            expected = model(input_ids, attention_mask=attention_mask, return_tags=False).logits.numpy()
        got = emissions_by_onnx(tmp_path / "onnx", model, input_ids, attention_mask)
        assert np.abs(got - expected)[attention_mask.bool().numpy()].max() < 1e-4
    crf = np.load(tmp_path / "onnx" / "crf.npz")
    assert np.array_equal(crf["transitions"], model.crf.crf.transitions.detach().numpy())


ONNX_TAG = """
import json, sys
sys.path.insert(0, sys.argv[1])
from modeling.onnx_pipeline import OnnxChineseNER
texts = json.loads(open(sys.argv[3], encoding="utf-8").read())
ner = OnnxChineseNER(sys.argv[2], threads=1)
try:
    import torch
    torch_imports = True
except ImportError:
    torch_imports = False
print(json.dumps({"torch": torch_imports, "one": ner(texts[0]), "all": ner(texts, batch_size=3),
                  "forced": ner(texts[0], force_entities=True)}, ensure_ascii=False))
"""


def spans(entities) -> list:
    return [(e["word"], e["entity_group"], e["start"], e["end"]) for e in entities]


@pytest.mark.parametrize("memory", [True, False])
def test_the_onnx_pipeline_tags_as_the_torch_one_where_torch_cannot_be_imported(memory_run, tmp_path, memory):
    import json
    import shutil
    import subprocess

    from transformers import AutoTokenizer, pipeline

    from conftest import torchless_python

    folder = tmp_path / "model"
    if memory:
        shutil.copytree(memory_run[0], folder)
        model = MemoryNetForTokenClassification.from_pretrained(folder, memory_method="entity")
        model.add_entities({"青禾书局": "company"}, AutoTokenizer.from_pretrained(folder))
    else:
        config = MemoryNetConfig.from_pretrained(memory_run[0], num_memory=0, memory_bank_size=0,
                                                 use_self_attention=False)  # fmt: skip
        model = MemoryNetForTokenClassification(config)
        model.add_entities({"青禾书局": "company"})  # a model without memory keeps it for forced matching
    model.eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(memory_run[0]).save_pretrained(folder)
    model.export_onnx(folder / "onnx")
    texts = [
        json.loads(line)["text"] for line in open(ROOT / "data_scripts" / "sample" / "dev.json", encoding="utf-8")
    ]
    texts = ["他在青禾书局买了书。", *texts, "", " \t", "林晓梅" * 40 + "。" + "市教育局" * 30]
    (tmp_path / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "tag.py").write_text(ONNX_TAG, encoding="utf-8")
    proc = subprocess.run([*torchless_python(tmp_path), str(tmp_path / "tag.py"), str(ROOT), str(folder),
                           str(tmp_path / "texts.json")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["torch"] is False  # the process could not import torch
    ner = pipeline("chinese-ner", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    expected = ner(texts)
    assert [spans(e) for e in got["all"]] == [spans(e) for e in expected]
    assert spans(got["one"]) == spans(expected[0])
    assert spans(got["forced"]) == spans(ner(texts[0], force_entities=True))
    scores = [(a["score"], b["score"]) for x, y in zip(got["all"], expected) for a, b in zip(x, y)]
    assert all(abs(a - b) < 1e-4 for a, b in scores)
