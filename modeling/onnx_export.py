"""Both models' networks up to their scores as ONNX graphs, for ONNX Runtime serving (``onnx_pipeline``).

``export_onnx(model, folder)`` writes, for the memory network:

* with memory, ``encoder.onnx``: ``input_ids``, ``attention_mask`` -> ``hidden`` (the character BiLSTM, eq. 1), which
  encodes a query and the bank's sentences alike (eq. 2), and ``head.onnx``: ``hidden``, ``attention_mask``,
  ``memory_hidden`` ``[batch, n, len_a, d]`` and ``memory_tag_ids`` ``[batch, n, len_a]`` -> ``emissions`` (the memory
  attention, eqs. 3-7, the self-attention, eqs. 8-10, and the classifier); ``bank.npz``: the memory bank's buffers,
  for retrieval and the memories' encodings;
* without memory, the two in one graph, ``emissions.onnx``: ``input_ids``, ``attention_mask`` -> ``emissions`` (one
  ONNX Runtime call a batch: at one sentence a call, the call itself is a good part of the time);
* ``crf.npz``: the CRF's start, transition and end scores, for Viterbi decoding in NumPy (pytorch-crf does not
  export);

and for the seq2seq tagger:

* ``encoder.onnx``: ``input_ids``, ``attention_mask`` -> ``hidden`` (eqs. 1-5) and what the decoder computes once a
  sentence: its first state ``state_h``, ``state_c`` and the attention's ``keys`` and ``values``;
* ``decoder_step.onnx``: one decoder step (eqs. 6-11): ``prev_tags``, ``state_h``, ``state_c``, ``keys``,
  ``values``, ``attention_mask`` (and ``hidden_i``, the character's own encoder state, with
  ``config.feed_encoder_state``) -> ``logits``, ``next_state_h``, ``next_state_c``; the loop over the steps runs in
  NumPy;
* ``decoding.npz``: the tag-scheme constraints of the decoder's choices (``allowed``, ``can_end``) and ``go_id``.

Retrieval stays in Python. The graphs are traced from explicit compositions of the models' own modules, so no
data-dependent branch of the eager code (packed or unpacked LSTM, the attention path) is frozen into them.
``quantize=True`` rewrites each graph with ONNX Runtime's int8 dynamic quantisation (weights int8, activations
quantised on the fly).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .encoders import CharBiLSTMEncoder, _lstm_by_direction

OPSET = 17
AXES = {0: "batch", 1: "length"}


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
    """Everything of the memory network between the encoder and the CRF."""

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


class EmissionsGraph(nn.Module):
    """The memory network without memory: encoder and head in one graph."""

    def __init__(self, model):
        super().__init__()
        self.encoder, self.head = EncoderGraph(model.encoder), HeadGraph(model)

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids, attention_mask), attention_mask)


class Seq2SeqEncoderGraph(nn.Module):
    """The seq2seq tagger's encoder and the decoder's start (``Seq2SeqAttnTagger._start``)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.encoder = model, EncoderGraph(model.encoder)

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor):
        hidden = self.encoder(input_ids, attention_mask)
        (state_h, state_c), (keys, values, _) = self.model._start(hidden, attention_mask)
        return hidden, state_h, state_c, keys, values


class DecoderStepGraph(nn.Module):
    """One step of the seq2seq decoder (``Seq2SeqAttnTagger._step``), the encoder state of its character given."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, prev_tags, state_h, state_c, keys, values, attention_mask, hidden_i=None):
        # _step reads the character's state as hidden[:, position]: a one-step "sequence" holds exactly it
        hidden = hidden_i[:, None] if hidden_i is not None else None
        logits, (state_h, state_c), _ = self.model._step(
            prev_tags, (state_h, state_c), hidden, (keys, values, attention_mask.bool()), 0
        )
        return logits, state_h, state_c


def _export(module: nn.Module, inputs: tuple, path: Path, input_names: list, output_names: list, axes: dict) -> None:
    torch.onnx.export(module, inputs, path, dynamo=False, input_names=input_names, output_names=output_names,
                      opset_version=OPSET, dynamic_axes=axes)  # fmt: skip


def _example(batch: int = 2, length: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = torch.full((batch, length), 100, dtype=torch.long)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1, 4:] = 0  # padding in the example, so that nothing assumes full rows
    return input_ids, attention_mask


def _export_memory_net(model, folder: Path) -> list[Path]:
    input_ids, attention_mask = _example()
    batch, length = input_ids.shape
    if model.config.num_memory <= 0:
        path = folder / "emissions.onnx"
        _export(EmissionsGraph(model).eval(), (input_ids, attention_mask), path, ["input_ids", "attention_mask"],
                ["emissions"], {name: AXES for name in ("input_ids", "attention_mask", "emissions")})  # fmt: skip
        graphs = [path]
    else:
        encoder, head = EncoderGraph(model.encoder).eval(), HeadGraph(model).eval()
        _export(encoder, (input_ids, attention_mask), folder / "encoder.onnx", ["input_ids", "attention_mask"],
                ["hidden"], {name: AXES for name in ("input_ids", "attention_mask", "hidden")})  # fmt: skip
        hidden = encoder(input_ids, attention_mask)
        n = model.config.num_memory
        memory_hidden = hidden[:, None].expand(batch, n, length, hidden.shape[-1]).contiguous()
        memory_tag_ids = torch.zeros(batch, n, length, dtype=torch.long)
        memory_tag_ids[:, :, 0] = -100
        memory_axes = {0: "batch", 2: "memory_length"}
        _export(head, (hidden, attention_mask, memory_hidden, memory_tag_ids), folder / "head.onnx",
                ["hidden", "attention_mask", "memory_hidden", "memory_tag_ids"], ["emissions"],
                {"hidden": AXES, "attention_mask": AXES, "emissions": AXES, "memory_hidden": memory_axes,
                 "memory_tag_ids": memory_axes})  # fmt: skip
        bank = model.memory_bank
        names = ("input_ids", "labels", "lengths", "types", "pos", "token_chars")
        np.savez(folder / "bank.npz", **{name: getattr(bank, name).cpu().numpy() for name in names})
        graphs = [folder / "encoder.onnx", folder / "head.onnx"]
    crf = model.crf.crf
    np.savez(folder / "crf.npz", start=crf.start_transitions.cpu().numpy(), transitions=crf.transitions.cpu().numpy(),
             end=crf.end_transitions.cpu().numpy())  # fmt: skip
    return graphs


def _export_seq2seq(model, folder: Path) -> list[Path]:
    input_ids, attention_mask = _example()
    encoder, step = Seq2SeqEncoderGraph(model).eval(), DecoderStepGraph(model).eval()
    outputs = ["hidden", "state_h", "state_c", "keys", "values"]
    rows = {0: "batch"}
    _export(encoder, (input_ids, attention_mask), folder / "encoder.onnx", ["input_ids", "attention_mask"], outputs,
            {"input_ids": AXES, "attention_mask": AXES, "hidden": AXES, "keys": AXES, "values": AXES,
             "state_h": rows, "state_c": rows})  # fmt: skip
    hidden, state_h, state_c, keys, values = encoder(input_ids, attention_mask)
    prev_tags = torch.full((input_ids.shape[0],), model.go_id, dtype=torch.long)
    inputs = [prev_tags, state_h, state_c, keys, values, attention_mask]
    names = ["prev_tags", "state_h", "state_c", "keys", "values", "attention_mask"]
    axes = {"prev_tags": rows, "state_h": rows, "state_c": rows, "keys": AXES, "values": AXES,
            "attention_mask": AXES, "logits": rows}  # fmt: skip
    if model.config.feed_encoder_state:
        inputs.append(hidden[:, 1])
        names.append("hidden_i")
        axes["hidden_i"] = rows
    # an output may not share an input's name (the exporter would rename the input)
    axes.update(next_state_h=rows, next_state_c=rows)
    _export(step, tuple(inputs), folder / "decoder_step.onnx", names, ["logits", "next_state_h", "next_state_c"], axes)
    allowed, can_end = model.transition_constraints(torch.device("cpu"))
    np.savez(folder / "decoding.npz", allowed=allowed.numpy(), can_end=can_end.numpy(), go_id=model.go_id)
    return [folder / "encoder.onnx", folder / "decoder_step.onnx"]


def quantize_graphs(graphs: list[Path]) -> None:
    """Rewrite each graph with int8 weights (ONNX Runtime's dynamic quantisation)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for path in graphs:
        quantized = path.with_suffix(".int8.onnx")
        quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
        quantized.replace(path)


@torch.no_grad()
def export_onnx(model, folder: str | Path, quantize: bool = False) -> Path:
    """Write the graphs and the NumPy arrays of ``model`` (either architecture, with the character BiLSTM) into
    ``folder`` (see the module docstring); ``quantize``: int8 weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.glob("*.onnx"), *folder.glob("*.npz")]:  # another export's must not be read with these
        stale.unlink()
    was_training = model.training
    # the wrappers in eval mode: the exporter puts a wrapper back in its own mode afterwards, and with it the model
    model.eval()
    try:
        exporter = _export_seq2seq if hasattr(model, "generate_tags") else _export_memory_net
        graphs = exporter(model, folder)
    finally:
        model.train(was_training)
    if quantize:
        quantize_graphs(graphs)
    return folder
