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
* with the BiLSTM's input features (bigrams, softword, word sets), ``features.npz``: their tables, the bigram
  vocabulary, the lexicon and the taught words (``features_arrays``); the features are computed in NumPy
  (``char_features_numpy.CharFeaturesArrays``) and every graph that starts with the BiLSTM takes them as its
  ``features`` input;

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
        self.encoder = encoder

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor, features=None) -> torch.Tensor:
        lengths = attention_mask.sum(dim=1).clamp(min=1)
        embedded = self.encoder.embeddings(input_ids)
        if features is not None:  # the input features, computed outside the graph (features.npz)
            embedded = torch.cat([embedded, features], dim=-1)
        return _lstm_by_direction(self.encoder.lstm, embedded, lengths)


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

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor, features=None) -> torch.Tensor:
        return self.head(self.encoder(input_ids, attention_mask, features), attention_mask)


class Seq2SeqEncoderGraph(nn.Module):
    """The seq2seq tagger's encoder and the decoder's start (``Seq2SeqAttnTagger._start``)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.encoder = model, EncoderGraph(model.encoder)

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor, features=None):
        hidden = self.encoder(input_ids, attention_mask, features)
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


def _encoder_inputs(encoder, folder: Path) -> tuple[tuple, list[str], dict]:
    """The example inputs of a graph that starts with the character BiLSTM, their names and dynamic axes; with
    input features, their ``features`` input and ``features.npz`` (what ``CharFeaturesArrays`` computes it from)."""
    input_ids, attention_mask = _example()
    names = ["input_ids", "attention_mask"]
    if encoder.features is None:
        return (input_ids, attention_mask), names, {name: AXES for name in names}
    np.savez(folder / "features.npz", **features_arrays(encoder.features))
    features = encoder.features(input_ids, attention_mask)
    names.append("features")
    return (input_ids, attention_mask, features), names, {name: AXES for name in names}


def features_arrays(features) -> dict[str, np.ndarray]:
    """``CharFeatures``' tables, bigram vocabulary, lexicon and taught words as arrays (``features.npz``)."""
    out = {"vocab_size": np.array(features.vocab_size)}
    if features.bigram_embeddings is not None:
        out.update(bigram=features.bigram_embeddings.weight, bigram_keys=features.bigram_keys)
    if features.softword_embeddings is not None:
        out["softword"] = features.softword_embeddings.weight
    if features.word_embeddings is not None:
        table, taught = features.word_embeddings.weight, features.taught_vectors
        out["word"] = torch.cat([table, taught.to(table)]) if taught is not None and len(taught) else table
    if features.projection is not None:
        out.update(projection_weight=features.projection.weight, projection_bias=features.projection.bias)
    if features.reads_lexicon:
        taught = features.taught_words
        width = max((len(w) for w in taught), default=1)
        padded = np.array([list(w) + [0] * (width - len(w)) for w in taught], dtype=np.int64).reshape(-1, width)
        out.update(
            word_ids=features.word_ids, word_freqs=features.word_freqs, word_rows=features.word_rows,
            word_set_size=np.array(features.word_set_size),
            first_taught_row=np.array(features.word_embeddings.num_embeddings if features.word_embeddings else 0),
            taught_words=padded,
        )  # fmt: skip
    return {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


def _export_memory_net(model, folder: Path) -> list[Path]:
    model._teach_lexicon()  # the taught entities in the encoder's lexicon, as the model reads them now
    inputs, names, axes = _encoder_inputs(model.encoder, folder)
    input_ids, attention_mask = inputs[:2]
    batch, length = input_ids.shape
    if model.config.num_memory <= 0:
        path = folder / "emissions.onnx"
        _export(EmissionsGraph(model).eval(), inputs, path, names, ["emissions"], {**axes, "emissions": AXES})
        graphs = [path]
    else:
        encoder, head = EncoderGraph(model.encoder).eval(), HeadGraph(model).eval()
        _export(encoder, inputs, folder / "encoder.onnx", names, ["hidden"], {**axes, "hidden": AXES})
        hidden = encoder(*inputs)
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
    inputs, names, axes = _encoder_inputs(model.encoder, folder)
    input_ids, attention_mask = inputs[:2]
    encoder, step = Seq2SeqEncoderGraph(model).eval(), DecoderStepGraph(model).eval()
    outputs = ["hidden", "state_h", "state_c", "keys", "values"]
    rows = {0: "batch"}
    _export(encoder, inputs, folder / "encoder.onnx", names, outputs,
            {**axes, "hidden": AXES, "keys": AXES, "values": AXES, "state_h": rows, "state_c": rows})  # fmt: skip
    hidden, state_h, state_c, keys, values = encoder(*inputs)
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
