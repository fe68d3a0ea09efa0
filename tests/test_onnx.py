"""ONNX export and serving: the graphs give the model's own emission scores, and the ONNX Runtime pipeline, in a
process that cannot import torch, the torch pipeline's entities."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from modeling import MemoryNetConfig, MemoryNetForTokenClassification, Seq2SeqAttnTagger  # noqa: E402
from modeling.char_features_numpy import CharFeaturesArrays  # noqa: E402

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def emissions_by_onnx(folder, model, input_ids, attention_mask) -> np.ndarray:
    features = CharFeaturesArrays(np.load(folder / "features.npz")) if (folder / "features.npz").exists() else None

    def run(session, input_ids, attention_mask):
        """The graph's output for these ids and mask, with the NumPy features if it reads them."""
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        if "features" in {i.name for i in session.get_inputs()}:
            feeds["features"] = features(feeds["input_ids"], feeds["attention_mask"])
        return session.run(None, feeds)[0]

    if not model.config.num_memory:  # one graph
        return run(ort.InferenceSession(str(folder / "emissions.onnx")), input_ids, attention_mask)
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"))
    head = ort.InferenceSession(str(folder / "head.onnx"))
    feeds = {"hidden": run(encoder, input_ids, attention_mask), "attention_mask": attention_mask.numpy()}
    if model.config.num_memory:
        ids, mask, tags = model.memory_bank.gather(model.retrieve_memories(input_ids, attention_mask))
        b, n, width = ids.shape
        hidden = run(encoder, ids.view(b * n, width), mask.view(b * n, width))
        feeds.update(memory_hidden=hidden.reshape(b, n, width, -1), memory_tag_ids=tags.numpy())
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
out = {"torch": torch_imports, "one": ner(texts[0]), "all": ner(texts, batch_size=3),
       "forced": ner(texts[0], force_entities=True)}
if ner.seq2seq:
    out["beams"] = ner(texts, num_beams=3)
print(json.dumps(out, ensure_ascii=False))
"""


def spans(entities) -> list:
    return [(e["word"], e["entity_group"], e["start"], e["end"]) for e in entities]


def saved_model(kind: str, memory_run, seq2seq_run, folder, swap_run=None, lexicon_run=None):
    """A model folder of each kind that ONNX serves, with entities taught by name: the trained memory network (the
    one trained with the entity swap where given, which reads its memories' labels),
    an untrained plain BiLSTM-CRF (the sample config without memory or self-attention), the trained seq2seq
    tagger, and the memory network that reads the encoder's input features (taught entities in its lexicon)."""
    import shutil

    from transformers import AutoTokenizer

    if kind == "lexicon":  # the memory network whose BiLSTM reads bigrams, softword and word sets
        shutil.copytree(lexicon_run[0], folder)
        model = MemoryNetForTokenClassification.from_pretrained(folder)
        model.add_entities({"青禾书局": "company", "羽松湾": "scene"}, AutoTokenizer.from_pretrained(folder))
    elif kind == "memory":
        shutil.copytree((swap_run or memory_run)[0], folder)
        model = MemoryNetForTokenClassification.from_pretrained(folder, memory_method="entity")
        model.add_entities(
            {"青禾书局": "company", "小王子": "name", "羽松湾": "scene"}, AutoTokenizer.from_pretrained(folder)
        )
    elif kind == "plain":
        config = MemoryNetConfig.from_pretrained(memory_run[0], num_memory=0, memory_bank_size=0,
                                                 use_self_attention=False)  # fmt: skip
        model = MemoryNetForTokenClassification(config)
        model.add_entities({"青禾书局": "company"})  # a model without memory keeps it for forced matching
    else:
        shutil.copytree(seq2seq_run[0], folder)
        model = Seq2SeqAttnTagger.from_pretrained(folder)
        model.add_entities({"青禾书局": "company"})
    model.eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(memory_run[0]).save_pretrained(folder)
    return model


def test_the_seq2seq_graphs_give_the_taggers_steps(seq2seq_run, tmp_path):
    model = Seq2SeqAttnTagger.from_pretrained(seq2seq_run[0]).eval()
    model.export_onnx(tmp_path)
    encoder = ort.InferenceSession(str(tmp_path / "encoder.onnx"))
    step = ort.InferenceSession(str(tmp_path / "decoder_step.onnx"))
    input_ids = torch.randint(10, model.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
    if "features" in {i.name for i in encoder.get_inputs()}:
        feeds["features"] = CharFeaturesArrays(np.load(tmp_path / "features.npz"))(**feeds)
    hidden, state_h, state_c, keys, values = encoder.run(None, feeds)
    with torch.no_grad():
        expected_hidden = model.encode(input_ids, attention_mask)
        (s0, c0), (k0, v0, mask) = model._start(expected_hidden, attention_mask)
        tags = torch.tensor([1, 0, 2])
        expected, (h1, c1), _ = model._step(tags, (s0, c0), expected_hidden, (k0, v0, mask), 3)
    assert np.abs(hidden - expected_hidden.numpy()).max() < 1e-4
    assert np.abs(keys - k0.numpy()).max() < 1e-4 and np.abs(state_h - s0.numpy()).max() < 1e-4
    wanted = {i.name for i in step.get_inputs()}
    step_feeds = {"prev_tags": tags.numpy(), "state_h": state_h, "state_c": state_c, "keys": keys, "values": values,
                  "attention_mask": attention_mask.numpy(), "hidden_i": hidden[:, 3]}  # fmt: skip
    logits, h, c = step.run(None, {k: v for k, v in step_feeds.items() if k in wanted})
    assert np.abs(logits - expected.numpy()).max() < 1e-4 and np.abs(c - c1.numpy()).max() < 1e-4
    decoding = np.load(tmp_path / "decoding.npz")
    assert np.array_equal(decoding["allowed"], model.transition_constraints(torch.device("cpu"))[0].numpy())


@pytest.mark.parametrize("kind", ["memory", "plain", "seq2seq", "lexicon"])
def test_the_onnx_pipeline_tags_as_the_torch_one_where_torch_cannot_be_imported(
    memory_run, seq2seq_run, swap_run, tmp_path, kind, request
):
    import json
    import subprocess

    from transformers import AutoTokenizer, pipeline

    from conftest import torchless_python

    folder = tmp_path / "model"
    lexicon_run = request.getfixturevalue("lexicon_run") if kind == "lexicon" else None
    model = saved_model(kind, memory_run, seq2seq_run, folder, swap_run, lexicon_run)
    model.export_onnx(folder / "onnx")
    texts = [
        json.loads(line)["text"] for line in open(ROOT / "data_scripts" / "sample" / "dev.json", encoding="utf-8")
    ]
    texts = [
        "他在青禾书局买了书。",
        "小王子又一次来到羽松湾。",
        *texts,
        "",
        " \t",
        "林晓梅" * 40 + "。" + "市教育局" * 30,
    ]
    (tmp_path / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "tag.py").write_text(ONNX_TAG, encoding="utf-8")
    proc = subprocess.run([*torchless_python(tmp_path), str(tmp_path / "tag.py"), str(ROOT), str(folder),
                           str(tmp_path / "texts.json")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["torch"] is False  # the process could not import torch
    ner = pipeline("chinese-ner", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    expected = ner(texts)
    assert any(got["all"]) or kind == "plain"  # the trained models find entities in the sample's dev texts
    assert [spans(e) for e in got["all"]] == [spans(e) for e in expected]
    assert spans(got["one"]) == spans(expected[0])
    assert spans(got["forced"]) == spans(ner(texts[0], force_entities=True))
    scores = [(a["score"], b["score"]) for x, y in zip(got["all"], expected) for a, b in zip(x, y)]
    assert all(abs(a - b) < 1e-4 for a, b in scores)
    if kind == "seq2seq":
        assert [spans(e) for e in got["beams"]] == [spans(e) for e in ner(texts, num_beams=3)]


def test_int8_graphs_are_smaller_and_tag_nearly_as_the_float_ones(memory_run, seq2seq_run, tmp_path):
    import json

    import onnx

    from modeling.onnx_pipeline import OnnxChineseNER

    texts = [
        json.loads(line)["text"] for line in open(ROOT / "data_scripts" / "sample" / "dev.json", encoding="utf-8")
    ]
    for kind in ("memory", "seq2seq"):
        folder = tmp_path / kind
        model = saved_model(kind, memory_run, seq2seq_run, folder)
        model.export_onnx(folder / "onnx")
        model.export_onnx(folder / "onnx-int8", quantize=True)
        size = sum(p.stat().st_size for p in (folder / "onnx").glob("*.onnx"))
        size8 = sum(p.stat().st_size for p in (folder / "onnx-int8").glob("*.onnx"))
        assert size8 < 0.5 * size
        ops = {node.op_type for node in onnx.load(str(folder / "onnx-int8" / "encoder.onnx")).graph.node}
        assert "DynamicQuantizeLSTM" in ops  # the BiLSTM itself runs on int8 weights
        fp32 = OnnxChineseNER(folder, threads=1)(texts)
        int8 = OnnxChineseNER(folder, threads=1, graphs="onnx-int8")(texts)
        same = sum(spans(a) == spans(b) for a, b in zip(fp32, int8))
        assert same >= 0.8 * len(texts), f"{kind}: {same} of {len(texts)} texts tagged alike"
