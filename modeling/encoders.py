"""Character encoders chosen by config: any transformers ``AutoModel``, or an offline char BiLSTM.

Both take ``input_ids`` / ``attention_mask`` (one token per character, see
:mod:`.char_tokenization`) and return ``[batch, length, output_size]`` features, so every head in
this project works unchanged on either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoModel

from .char_features import CharFeatures

ENCODER_TYPES = ("bilstm", "transformers")  # a config's encoder_type: the char BiLSTM, or any AutoModel


class EncoderParametersMixin:
    """Which parameters are the model's encoder (pretrained, or the char embeddings / BiLSTM): the
    ones an optimiser trains at the encoder learning rate (the papers: 3e-5 for BERT, 2e-4 above it).

    Every model of this project names its encoder ``encoder``; ``encoder_modules`` lists the
    modules that count (the entity-type classifier's own training run: ``type_classifier.encoder``)."""

    encoder_modules: tuple[str, ...] = ("encoder",)

    def encoder_parameter_names(self) -> set[str]:
        return {
            f"{prefix}.{name}"
            for prefix in self.encoder_modules
            for name, _ in self.get_submodule(prefix).named_parameters()
        }


class CharBiLSTMEncoder(nn.Module):
    """Embeddings -> dropout -> BiLSTM (the papers' "BiLSTM + char embedding" rows).

    The embeddings are a character table (``embeddings=None``), with the ``features`` of
    :mod:`.char_features` beside it if given, or a given module, such as a :class:`TransformersEncoder` under
    the seq2seq paper's BiLSTM (its BERT row)."""

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.1,
        pad_token_id: int = 0,
        embeddings: nn.Module | None = None,
        features: CharFeatures | None = None,
    ):
        super().__init__()
        if embeddings is None:
            embeddings = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_token_id)
        else:
            embedding_size = embeddings.output_size
        self.embeddings = embeddings
        # bigram / softword / word-set embeddings beside a character table's (a pretrained encoder reads none)
        self.features = features if isinstance(embeddings, nn.Embedding) else None
        if self.features is not None:
            embedding_size += self.features.output_size
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embedding_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.output_size = 2 * hidden_size

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **unused,
    ) -> torch.Tensor:
        if isinstance(self.embeddings, nn.Embedding):
            embedded = self.embeddings(input_ids)
            if self.features is not None:
                embedded = torch.cat([embedded, self.features(input_ids, attention_mask)], dim=-1)
        else:
            embedded = self.embeddings(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return run_lstm(self.lstm, self.dropout(embedded), attention_mask)

    def get_input_embeddings(self) -> nn.Embedding:
        if isinstance(self.embeddings, nn.Embedding):
            return self.embeddings
        return self.embeddings.model.get_input_embeddings()


def run_lstm(lstm: nn.LSTM, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """A batch-first LSTM over the attended positions only, zeros at padding.

    Training packs a padded batch. Inference runs a bidirectional LSTM one direction at a time, unpacked
    (:func:`_lstm_by_direction`), which gives the same outputs and computes the padding too: it is the faster of
    the two on several threads (the packed kernel gains nothing from a second one) and, on one thread, when the
    characters fill at least 70% of the batch (32 rows of up to 128 characters, one thread: 35 ms by direction
    against 46 packed when full, 32 against 30 at 60%)."""
    if attention_mask is None:
        return lstm(inputs)[0]
    lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
    if bool((lengths == inputs.shape[1]).all()):  # no padding (one window): the same result, without packing
        return lstm(inputs)[0]
    unpacked_pays = torch.get_num_threads() > 1 or int(lengths.sum()) >= 0.7 * inputs.shape[0] * inputs.shape[1]
    # torch's own LSTM only: a quantised one (quantize_dynamic) keeps its weights packed, not by direction
    by_direction = isinstance(lstm, nn.LSTM) and lstm.bidirectional and lstm.batch_first and not lstm.proj_size
    if by_direction and not lstm.training and unpacked_pays:
        return _lstm_by_direction(lstm, inputs, lengths.to(inputs.device))
    packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    output, _ = lstm(packed)
    output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=inputs.shape[1])
    return output


def _lstm_by_direction(lstm: nn.LSTM, inputs: torch.Tensor, lengths: torch.LongTensor) -> torch.Tensor:
    """``lstm`` (bidirectional, batch-first) over rows of the given lengths, each direction an unpacked
    ``torch.lstm`` with that direction's weights: the forward one reads the rows as they are (a row's
    padding comes after its characters, so it cannot reach them), the backward one reads each row
    reversed within its length (its padding again last), and its outputs are put back in place."""
    width = inputs.shape[1]
    positions = torch.arange(width, device=inputs.device)
    valid = positions < lengths[:, None]
    reverse = torch.where(valid, lengths[:, None] - 1 - positions, positions)[..., None]  # its own inverse
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if lstm.bias else [])
    hidden = inputs
    for layer in range(lstm.num_layers):
        outputs = []
        for suffix, reversed_rows in (("", False), ("_reverse", True)):
            weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in names]
            x = hidden.gather(1, reverse.expand_as(hidden)) if reversed_rows else hidden
            zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)
            out = torch.lstm(x, (zeros, zeros), weights, lstm.bias, 1, 0.0, False, False, True)[0]
            outputs.append(out.gather(1, reverse.expand_as(out)) if reversed_rows else out)
        hidden = torch.cat(outputs, dim=-1)
    return hidden * valid[..., None]


class TransformersEncoder(nn.Module):
    """Wraps an ``AutoModel`` so it is called like :class:`CharBiLSTMEncoder`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.output_size = model.config.hidden_size

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **unused) -> torch.Tensor:
        kwargs = {"attention_mask": attention_mask}
        if token_type_ids is not None and getattr(self.model.config, "type_vocab_size", 0):
            kwargs["token_type_ids"] = token_type_ids
        return self.model(input_ids=input_ids, **kwargs).last_hidden_state


def _auto_model(config_or_path, pretrained: bool) -> nn.Module:
    """``AutoModel`` without a pooling layer where the class has one (it is never used here)."""
    load = AutoModel.from_pretrained if pretrained else AutoModel.from_config
    try:
        return load(config_or_path, add_pooling_layer=False)
    except TypeError:
        return load(config_or_path)


def build_encoder(config, encoder_type: str | None = None, encoder_config=None) -> nn.Module:
    """The encoder ``config.encoder_type`` names, randomly initialised (weights come from a checkpoint).

    ``encoder_type`` / ``encoder_config`` override the config's (the entity-type classifier's own encoder)."""
    encoder_type = encoder_type or config.encoder_type
    if encoder_type == "bilstm":
        return CharBiLSTMEncoder(
            config.vocab_size,
            config.char_embedding_size,
            config.lstm_hidden_size,
            config.lstm_num_layers,
            config.hidden_dropout_prob,
            config.pad_token_id if config.pad_token_id is not None else 0,
            features=char_features(config),
        )
    return TransformersEncoder(_auto_model(encoder_config or config.encoder_config, pretrained=False))


def char_features(config) -> CharFeatures | None:
    """The bigram / softword / word-set features a config asks for, or None."""
    if config.bigram_vocab_size or config.use_softword or config.use_word_sets:
        return CharFeatures(config)
    return None


def load_pretrained_encoder(name_or_path: str) -> TransformersEncoder:
    """A pretrained transformers encoder from a Hub id (when online) or a local folder."""
    return TransformersEncoder(_auto_model(name_or_path, pretrained=True))


def read_char_vectors(npz_path: str | Path, vocab_path: str | Path | None = None) -> tuple[list[str], np.ndarray]:
    """Pretrained character vectors: an ``.npz`` with key ``embeddings`` and a vocab file, one token a line
    (row ``i`` is line ``i``; default: ``<name>.vocab.txt`` beside the ``.npz``)."""
    npz_path = Path(npz_path)
    vocab_path = Path(vocab_path) if vocab_path else npz_path.with_suffix(".vocab.txt")
    with np.load(npz_path) as data:
        if "embeddings" not in data:
            raise ValueError(f"{npz_path}: no array named 'embeddings' (found {', '.join(data.files)})")
        vectors = data["embeddings"]
    tokens = vocab_path.read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "" and len(tokens) == len(vectors) + 1:
        tokens.pop()
    if len(tokens) != len(vectors):
        raise ValueError(f"{vocab_path}: {len(tokens)} tokens for {len(vectors)} vectors in {npz_path}")
    return tokens, vectors


@torch.no_grad()
def init_char_embeddings(
    embeddings: nn.Embedding, vocab: dict[str, int], tokens: list[str], vectors: np.ndarray
) -> dict:
    """Copy pretrained vectors onto the rows of a character embedding table whose token they cover.

    ``vocab`` is the tokenizer's token -> id map. Characters the vectors do not cover keep their
    random initialisation, rescaled to the vectors' standard deviation. Returns coverage counts.
    """
    weight = embeddings.weight
    if vectors.shape[1] != weight.shape[1]:
        raise ValueError(f"char vectors are {vectors.shape[1]}-d but char_embedding_size is {weight.shape[1]}")
    std = float(vectors.std())
    weight.normal_(0.0, std)
    found = 0
    for token, row in zip(tokens, vectors):
        idx = vocab.get(token)
        if idx is None and len(token) == 1:
            idx = vocab.get(token.lower())
        if idx is not None and idx < weight.shape[0]:
            weight[idx] = torch.as_tensor(row, dtype=weight.dtype)
            found += 1
    if embeddings.padding_idx is not None:
        weight[embeddings.padding_idx].zero_()
    return {"vectors": len(tokens), "vocab": len(vocab), "initialised": found}
