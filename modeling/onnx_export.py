"""The memory network's layers up to the emission scores as ONNX graphs, for ONNX Runtime serving.

``export_onnx(model, folder)`` writes:

* ``encoder.onnx``: ``input_ids``, ``attention_mask`` -> ``hidden`` (the character BiLSTM, eq. 1), which encodes a
  query and the bank's sentences alike (eq. 2);
* ``head.onnx``: ``hidden``, ``attention_mask`` and, with memory, ``memory_hidden`` ``[batch, n, len_a, d]`` and
  ``memory_tag_ids`` ``[batch, n, len_a]`` -> ``emissions`` (the memory attention, eqs. 3-7, the self-attention,
  eqs. 8-10, and the classifier);
* ``crf.npz``: the CRF's start, transition and end scores, for Viterbi decoding in NumPy (pytorch-crf does not
  export);
* ``bank.npz`` (memory network): the memory bank's buffers, for retrieval and the memories' encodings.

Retrieval stays in Python. The graphs are traced from explicit compositions of the model's own modules, so no
data-dependent branch of the eager code (packed or unpacked LSTM, the attention path) is frozen into them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .encoders import CharBiLSTMEncoder, _lstm_by_direction

OPSET = 17


class EncoderGraph(nn.Module):
    """The character BiLSTM at inference: embeddings, then each direction over the rows' own lengths."""

    def __init__(self, encoder: CharBiLSTMEncoder):
        super().__init__()
        if not isinstance(encoder, CharBiLSTMEncoder) or not isinstance(encoder.embeddings, nn.Embedding):
            raise ValueError("ONNX export covers the character BiLSTM encoder (a pretrained encoder: export it with "
                             "transformers' own tools)")  # fmt: skip
        if encoder.features is not None:
            raise ValueError("ONNX export does not cover the encoder's input features (bigrams, softword, word sets)")
        self.encoder = encoder

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> torch.Tensor:
        lengths = attention_mask.sum(dim=1).clamp(min=1)
        return _lstm_by_direction(self.encoder.lstm, self.encoder.embeddings(input_ids), lengths)


class HeadGraph(nn.Module):
    """Everything between the encoder and the CRF."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, hidden, attention_mask, memory_hidden=None, memory_tag_ids=None) -> torch.Tensor:
        m = self.model
        if memory_hidden is not None:
            fused, _ = m.memory_attention(hidden, memory_hidden, memory_tag_ids, m.label_embeddings.weight)
            hidden = torch.cat([hidden, fused], dim=-1)
        if m.self_attention is not None:
            x = m.self_attention.project(hidden)
            hidden = m.self_attention.norm(x + m.self_attention._attend(x, attention_mask))
        return m.classifier(hidden)


@torch.no_grad()
def export_onnx(model, folder: str | Path) -> Path:
    """Write ``encoder.onnx``, ``head.onnx`` and ``crf.npz`` of ``model`` (a ``MemoryNetForTokenClassification``
    with the character BiLSTM) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    # the wrappers in eval mode: the exporter puts a wrapper back in its own mode afterwards, and with it the model
    encoder, head = EncoderGraph(model.encoder).eval(), HeadGraph(model).eval()
    batch, length, n = 2, 7, max(model.config.num_memory, 1)
    input_ids = torch.full((batch, length), 100, dtype=torch.long)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1, 4:] = 0  # padding in the example, so that nothing assumes full rows
    axes = {0: "batch", 1: "length"}
    torch.onnx.export(
        encoder, (input_ids, attention_mask), folder / "encoder.onnx", dynamo=False,
        input_names=["input_ids", "attention_mask"], output_names=["hidden"], opset_version=OPSET,
        dynamic_axes={name: axes for name in ("input_ids", "attention_mask", "hidden")},
    )  # fmt: skip
    hidden = encoder(input_ids, attention_mask)
    inputs, names = (hidden, attention_mask), ["hidden", "attention_mask"]
    dynamic = {"hidden": axes, "attention_mask": axes, "emissions": axes}
    if model.config.num_memory > 0:
        memory_hidden = hidden[:, None].expand(batch, n, length, hidden.shape[-1]).contiguous()
        memory_tag_ids = torch.zeros(batch, n, length, dtype=torch.long)
        memory_tag_ids[:, :, 0] = -100
        inputs += (memory_hidden, memory_tag_ids)
        names += ["memory_hidden", "memory_tag_ids"]
        dynamic.update(memory_hidden={0: "batch", 2: "memory_length"}, memory_tag_ids={0: "batch", 2: "memory_length"})
    torch.onnx.export(
        head, inputs, folder / "head.onnx", dynamo=False, input_names=names,
        output_names=["emissions"], opset_version=OPSET, dynamic_axes=dynamic,
    )  # fmt: skip
    crf = model.crf.crf
    np.savez(folder / "crf.npz", start=crf.start_transitions.numpy(), transitions=crf.transitions.numpy(),
             end=crf.end_transitions.numpy())  # fmt: skip
    if model.config.num_memory > 0:
        bank = model.memory_bank
        names = ("input_ids", "labels", "lengths", "types", "pos", "token_chars")
        np.savez(folder / "bank.npz", **{name: getattr(bank, name).cpu().numpy() for name in names})
    model.train(was_training)
    return folder
