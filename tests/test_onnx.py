"""ONNX export: the graphs give the model's own emission scores (ONNX Runtime against torch)."""

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
