"""PyTorch BERT-Seq2Seq-Attention tagger (``Seq2SeqAttnTagger``).

Paper: "a Seq2Seq-model-based NER method" (``shared/papers/bert_seq2seq_attention_ner.txt``),
section 2.2; equation numbers in docstrings refer to it. Character embeddings (a table, or any
transformers encoder, the paper's BERT) -> BiLSTM encoder (eqs. 1-5) -> attention over the encoder
states (eqs. 6-8) -> LSTM decoder fed the previous tag (eqs. 9-10) -> softmax over tags (eq. 11).
Training feeds the previous *gold* tag (teacher forcing); inference feeds the decoder's own
choice, greedily or with a beam. All decoding is in :meth:`Seq2SeqAttnTagger.generate_tags`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import TokenClassifierOutput

from .configuration_seq2seq_ner import Seq2SeqAttnConfig
from .crf import character_mask
from .char_features import CharFeatures
from .encoders import (
    CharBiLSTMEncoder,
    EncoderParametersMixin,
    TransformersEncoder,
    char_features,
    _auto_model,
    load_pretrained_encoder,
)
from .tag_constraints import transition_masks
from .tagging import TaggerMixin


@dataclass
class Seq2SeqTaggerOutput(TokenClassifierOutput):
    r"""
    loss (`torch.FloatTensor` of shape `(1,)`, returned when `labels` is given):
        Teacher-forced cross-entropy of the gold tags (eq. 11), averaged over characters.
    logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, num_labels)`):
        Decoder scores before the softmax of eq. 11, aligned with `input_ids` (zero off characters):
        given the gold previous tags in training, given the decoded previous tags when `tags` are returned.
    tags (`torch.LongTensor` of shape `(batch_size, sequence_length)`, returned in eval mode or with
    `return_tags=True`):
        Decoded tag ids aligned with `input_ids`; `-100` on `[CLS]`, `[SEP]` and padding. Never
        depends on `labels`.
    attentions (`tuple(torch.FloatTensor)`, with `output_attentions=True`):
        One tensor `(batch_size, characters, sequence_length)`: the attention `a_it` of eq. 7 of
        every decoder step over the input tokens.
    """

    tags: torch.LongTensor | None = None


# parameter names of folders saved before the encoder was named as in the memory network (a char table or a
# transformers model as `encoder`, the BiLSTM as `bilstm`): from_pretrained renames them
LEGACY_KEYS = {r"^encoder\.weight$": "encoder.embeddings.weight", r"^encoder\.model\.": "encoder.embeddings.model.",
               r"^bilstm\.": "encoder.lstm."}  # fmt: skip


class Seq2SeqAttnPreTrainedModel(EncoderParametersMixin, PreTrainedModel):
    config: Seq2SeqAttnConfig
    config_class = Seq2SeqAttnConfig
    base_model_prefix = "seq2seq_ner"
    supports_gradient_checkpointing = False
    # the paper's embedding layer (a char table, or BERT) learns at the encoder rate, the BiLSTM above it with the rest
    encoder_modules = ("encoder.embeddings",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, CharFeatures):
            module.reset_parameters()
        elif isinstance(module, CharBiLSTMEncoder) and isinstance(module.embeddings, nn.Embedding):
            # N(0, 1) character embeddings, as nn.Embedding does; the generic N(0, 0.02) is too small for an LSTM
            init.normal_(module.embeddings.weight, 0.0, 1.0)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``; a folder saved with the old parameter names loads too, and is saved
        again with today's."""
        kwargs.setdefault("key_mapping", LEGACY_KEYS)
        model = super().from_pretrained(*args, **kwargs)
        model._weight_conversions = None  # save_pretrained would otherwise write the old names back
        return model


class DecoderAttention(nn.Module):
    """``a_it = softmax_t(score(s_{i-1}, h_t))`` (eqs. 7-8) and ``c_i = sum_t a_it h_t`` (eq. 6).

    ``score`` is ``dot`` (``s·h``), ``general`` (``(W_q s)·(W_k h)``) or ``additive``
    (``vᵀ tanh(W_q s + W_k h)``). Everything that depends only on the encoder states (``W_k h``,
    and the context values) is computed once per sentence by :meth:`prepare`, so each decoder step
    costs ``O(length x attention_size)``. With ``attention_size`` set, the context is summed over
    ``W_v h_t`` (``attention_size`` wide), which is the paper's ``c_i`` followed by a linear map: the
    decoder reads ``c_i`` only through linear layers, so this only bounds their rank, and it makes
    each step several times cheaper than summing the full ``2 x 128``-wide states.
    """

    def __init__(self, kind: str, query_size: int, key_size: int, attention_size: int | None):
        super().__init__()
        self.kind = kind
        if kind in ("general", "additive"):
            self.query_proj = nn.Linear(query_size, attention_size, bias=kind == "additive")
            self.key_proj = nn.Linear(key_size, attention_size, bias=False)
        if kind == "additive":
            self.v = nn.Linear(attention_size, 1, bias=False)
        self.value_proj = nn.Linear(key_size, attention_size, bias=False) if attention_size else None
        self.output_size = attention_size or key_size

    def prepare(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys ``[batch, length, *]`` and values ``[batch, length, output_size]`` of the encoder states."""
        keys = hidden if self.kind == "dot" else self.key_proj(hidden)
        values = hidden if self.value_proj is None else self.value_proj(hidden)
        return keys, values

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query ``s_{i-1}`` ``[batch, q]``, prepared keys/values, mask ``[batch, length]`` -> context ``[batch,
        output_size]``, ``a_i`` ``[batch, length]``."""
        if self.kind == "additive":
            scores = self.v(torch.tanh(keys + self.query_proj(query)[:, None])).squeeze(-1)
        else:
            q = query if self.kind == "dot" else self.query_proj(query)
            scores = torch.bmm(keys, q[:, :, None]).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1)  # eq. 7
        context = torch.bmm(weights[:, None], values).squeeze(1)  # eq. 6
        return context, weights


class Seq2SeqAttnTagger(TaggerMixin, Seq2SeqAttnPreTrainedModel):
    """Embeddings -> BiLSTM encoder -> attention -> LSTM decoder over the previous tag -> softmax.

    Decoder step ``i`` tags character ``i``: it attends over all input tokens with ``s_{i-1}``
    (eqs. 6-8), reads ``[TagEmb(y_{i-1}); c_i]`` (and the character's own encoder state ``h_i``
    with ``config.feed_encoder_state``), updates ``s_i`` (eq. 10) and scores the tags from
    ``[s_i; TagEmb(y_{i-1}); c_i]`` (eqs. 9, 11). ``y_0`` is a start symbol.
    """

    def __init__(self, config: Seq2SeqAttnConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        # the embedding layer (a char table, or a transformers model such as the paper's BERT) and the BiLSTM of
        # eqs. 1-5: `encoder.embeddings` and `encoder.lstm`, as in the memory network
        embeddings = None
        if config.encoder_type == "transformers":
            embeddings = TransformersEncoder(_auto_model(config.encoder_config, pretrained=False))
        self.encoder = CharBiLSTMEncoder(
            config.vocab_size,
            config.char_embedding_size,
            config.lstm_hidden_size,
            dropout=config.hidden_dropout_prob,
            pad_token_id=config.pad_token_id if config.pad_token_id is not None else 0,
            embeddings=embeddings,
            features=char_features(config),
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        encoder_size = self.encoder.output_size
        self.attention = DecoderAttention(
            config.attention_score, config.decoder_hidden_size, encoder_size, config.attention_size
        )
        self.tag_embeddings = nn.Embedding(
            config.num_labels + 1, config.tag_embedding_size
        )  # last row: the start symbol
        step_size = (
            config.tag_embedding_size + self.attention.output_size + (encoder_size if config.feed_encoder_state else 0)
        )
        self.init_state = nn.Linear(encoder_size, config.decoder_hidden_size)
        self.decoder = nn.LSTMCell(step_size, config.decoder_hidden_size)
        self.classifier = nn.Linear(config.decoder_hidden_size + step_size, config.num_labels)
        self._constraints: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.post_init()

    def reset_labels(self, id2label: dict[int, str]) -> None:
        """Take a new label set (fine-tuning on other entity types): the parts that depend on it, the
        previous-tag embeddings and the output layer, are initialised anew; the encoders and the
        decoder keep their weights."""
        self.config.id2label = dict(id2label)
        self.config.label2id = {label: i for i, label in self.config.id2label.items()}
        self.num_labels = self.config.num_labels
        device = self.classifier.weight.device
        self.tag_embeddings = nn.Embedding(self.num_labels + 1, self.config.tag_embedding_size).to(device)
        self.classifier = nn.Linear(self.classifier.in_features, self.num_labels).to(device)
        for module in (self.tag_embeddings, self.classifier):
            module.apply(self._init_weights)
        self._constraints.clear()

    @classmethod
    def from_encoder_pretrained(cls, encoder_name_or_path: str, **config_kwargs) -> "Seq2SeqAttnTagger":
        """A new tagger on a pretrained transformers encoder (Hub id when online, or a local folder)."""
        encoder = load_pretrained_encoder(encoder_name_or_path)
        config = Seq2SeqAttnConfig(
            encoder_type="transformers", encoder_config=encoder.model.config.to_dict(), **config_kwargs
        )
        model = cls(config)
        model.encoder.embeddings = encoder
        return model

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    @property
    def go_id(self) -> int:
        """Label-embedding row of the start symbol ``y_0``."""
        return self.config.num_labels

    # ------------------------------------------------------------------------------------------
    # encoder and one decoder step

    def encode(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor, token_type_ids=None) -> torch.Tensor:
        """Encoder states ``h`` ``[batch, length, 2 x lstm_hidden_size]`` (eqs. 1-5)."""
        return self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    def _start(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        """Initial decoder state (from the mean encoder state of the characters) and the attention's prepared keys,
        values and mask."""
        chars = character_mask(attention_mask).unsqueeze(-1)
        pooled = (hidden * chars).sum(1) / chars.sum(1).clamp(min=1)
        s0 = torch.tanh(self.init_state(pooled))
        return (s0, torch.zeros_like(s0)), (*self.attention.prepare(hidden), attention_mask.bool())

    def _step(self, prev_tags, state, hidden, prepared, position: int):
        """Decoder step for the character at token ``position``: eqs. 6-11 -> ``(logits, state, a_i)``."""
        context, weights = self.attention(state[0], *prepared)  # eqs. 6-8, with s_{i-1}
        inputs = [self.tag_embeddings(prev_tags), context]
        if self.config.feed_encoder_state:
            inputs.append(hidden[:, position])
        step_input = torch.cat(inputs, dim=-1)
        state = self.decoder(step_input, state)  # eq. 10
        logits = self.classifier(self.dropout(torch.cat([state[0], step_input], dim=-1)))  # eqs. 9, 11
        return logits, state, weights

    def transition_constraints(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Transition masks (``tag_constraints.transition_masks``) on ``device``; all-True without constraints."""
        if device not in self._constraints:
            num = self.config.num_labels
            if self.config.constrained_decoding:
                try:
                    allowed, can_end = transition_masks(self.config.id2label, self.config.tag_scheme)
                except ValueError as err:
                    raise ValueError(
                        f"constrained decoding needs {self.config.tag_scheme} labels in id2label ({err}); "
                        "set config.constrained_decoding = False for other label sets"
                    ) from err
            else:
                allowed, can_end = torch.ones(num + 1, num, dtype=torch.bool), torch.ones(num, dtype=torch.bool)
            self._constraints[device] = (allowed.to(device), can_end.to(device))
        return self._constraints[device]

    # ------------------------------------------------------------------------------------------
    # training: teacher forcing

    def teacher_forced_logits(self, hidden, attention_mask, tags: torch.LongTensor, output_attentions: bool = False):
        """Scores of every step given the previous tags ``tags`` (aligned with ``input_ids``, ``-100``
        off characters): step ``i`` is fed ``tags[:, i - 1]``, the start symbol for the first character.
        In training with ``config.scheduled_sampling_prob = p > 0``, each step is instead fed, with
        probability ``p``, the decoder's own best allowed tag at the previous step.
        Returns ``[batch, characters, num_labels]`` (and the attention with ``output_attentions``)."""
        steps = hidden.shape[1] - 2
        previous = tags[:, :steps].masked_fill(
            tags[:, :steps] < 0, self.go_id
        )  # position 0 is [CLS]: the start symbol
        own_prob = self.config.scheduled_sampling_prob if self.training else 0.0
        num_chars = attention_mask.sum(dim=1) - 2
        state, prepared = self._start(hidden, attention_mask)
        logits, attentions = [], []
        fed = previous[:, 0]
        for i in range(steps):
            if i > 0 and own_prob > 0:  # scheduled sampling: the decoder's own choice after what step i-1 was fed
                own = self._best_allowed(logits[-1].detach(), fed, i - 1, num_chars)
                fed = torch.where(torch.rand(own.shape, device=own.device) < own_prob, own, previous[:, i])
            elif i > 0:
                fed = previous[:, i]
            step_logits, state, weights = self._step(fed, state, hidden, prepared, i + 1)
            logits.append(step_logits)
            attentions.append(weights)
        return torch.stack(logits, dim=1), (torch.stack(attentions, dim=1) if output_attentions else None)

    # ------------------------------------------------------------------------------------------
    # inference: greedy or beam search, the only place tags are decoded

    @torch.no_grad()
    def generate_tags(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        num_beams: int | None = None,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.LongTensor, torch.Tensor]:
        """Decode tags feeding back the decoder's own choices; never reads gold labels.

        ``num_beams`` (default ``config.num_beams``): 1 is greedy, ``k`` keeps the ``k`` best partial
        tag sequences by summed log-probability. With ``config.constrained_decoding`` only sequences
        the tag scheme allows are considered. Returns tags ``[batch, length]`` aligned with
        ``input_ids`` (``-100`` off characters) and the step scores along them ``[batch, length, num_labels]``.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if hidden is None:
            hidden = self.encode(input_ids, attention_mask, token_type_ids)
        num_beams = num_beams or self.config.num_beams
        steps = hidden.shape[1] - 2
        num_chars = attention_mask.sum(dim=1) - 2
        if num_beams == 1:
            tags, logits = self.greedy_decode(hidden, attention_mask, num_chars, steps)
        else:
            tags, logits = self.beam_search(hidden, attention_mask, num_chars, steps, num_beams)
        return self.align_to_input_ids(tags, attention_mask), self.align_to_input_ids(logits, attention_mask)

    def _choose_mask(self, prev_tags, position, num_chars):
        """``[rows, num_labels]``: the tags allowed after ``prev_tags`` at character ``position`` (last ones must
        end an entity)."""
        allowed, can_end = self.transition_constraints(prev_tags.device)
        mask = allowed[prev_tags]
        last = (num_chars - 1 == position)[:, None]
        return mask & (can_end[None] | ~last)

    def _best_allowed(self, step_logits, prev_tags, position, num_chars) -> torch.LongTensor:
        """The greedy choice at character ``position``: the best-scoring tag allowed after ``prev_tags``."""
        allowed = self._choose_mask(prev_tags, position, num_chars)
        return step_logits.masked_fill(~allowed, torch.finfo(step_logits.dtype).min).argmax(dim=-1)

    def greedy_decode(self, hidden, attention_mask, num_chars, steps):
        state, prepared = self._start(hidden, attention_mask)
        prev = torch.full((hidden.shape[0],), self.go_id, dtype=torch.long, device=hidden.device)
        tags, logits = [], []
        for i in range(steps):
            step_logits, state, _ = self._step(prev, state, hidden, prepared, i + 1)
            prev = self._best_allowed(step_logits, prev, i, num_chars)
            tags.append(prev)
            logits.append(step_logits)
        return torch.stack(tags, dim=1), torch.stack(logits, dim=1)

    def beam_search(self, hidden, attention_mask, num_chars, steps, k):
        batch, num_labels = hidden.shape[0], self.config.num_labels
        hidden, attention_mask, num_chars = (
            x.repeat_interleave(k, dim=0) for x in (hidden, attention_mask, num_chars)
        )
        state, prepared = self._start(hidden, attention_mask)
        prev = torch.full((batch * k,), self.go_id, dtype=torch.long, device=hidden.device)
        scores = torch.full((batch, k), float("-inf"), device=hidden.device)
        scores[:, 0] = 0.0  # one live beam at the start
        done_row = torch.full((num_labels,), float("-inf"), device=hidden.device)
        done_row[0] = 0.0  # after its last character a beam extends by one ignored tag at no cost
        history = []  # per step: (chosen tag [batch, k], parent beam [batch, k], step logits [batch, k, num_labels])
        offsets = (torch.arange(batch, device=hidden.device) * k)[:, None]
        for i in range(steps):
            step_logits, state, _ = self._step(prev, state, hidden, prepared, i + 1)
            log_probs = torch.log_softmax(step_logits.float(), dim=-1)
            log_probs = log_probs.masked_fill(~self._choose_mask(prev, i, num_chars), float("-inf"))
            log_probs = torch.where((i < num_chars)[:, None], log_probs, done_row)
            total = (scores[:, :, None] + log_probs.view(batch, k, num_labels)).view(batch, k * num_labels)
            scores, index = total.topk(k, dim=-1)
            parent, tag = index // num_labels, index % num_labels
            rows = (offsets + parent).flatten()
            state = (state[0][rows], state[1][rows])
            prev = tag.flatten()
            history.append((tag, parent, step_logits.view(batch, k, num_labels)))
        best = scores.argmax(dim=-1)
        tags, logits = [], []
        batch_index = torch.arange(batch, device=hidden.device)
        for tag, parent, step_logits in reversed(history):
            tags.append(tag[batch_index, best])
            best = parent[batch_index, best]
            logits.append(step_logits[batch_index, best])
        return torch.stack(tags[::-1], dim=1), torch.stack(logits[::-1], dim=1)

    @staticmethod
    def align_to_input_ids(per_char: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Steps ``[batch, length - 2, ...]`` -> ``[batch, length, ...]`` aligned with ``input_ids``:
        ``-100`` (tags) or 0 (scores) on ``[CLS]``, ``[SEP]`` and padding."""
        out = per_char.new_full(
            (per_char.shape[0], attention_mask.shape[1], *per_char.shape[2:]),
            -100 if not per_char.is_floating_point() else 0,
        )
        out[:, 1:-1] = per_char
        chars = character_mask(attention_mask)
        while chars.dim() < out.dim():
            chars = chars.unsqueeze(-1)
        return out.masked_fill(~chars, -100 if not per_char.is_floating_point() else 0)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        return_tags: bool | None = None,
        num_beams: int | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqTaggerOutput | tuple:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            `[CLS]`, one token per character, `[SEP]` (see `char_tokenization.encode_chars`).
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Tag ids aligned with `input_ids`, `-100` on `[CLS]`, `[SEP]` and padding. Only for the
            loss (teacher forcing); the returned `tags` never depend on them.
        return_tags (`bool`, *optional*):
            Decode tags with `generate_tags`; defaults to `not self.training`.
        num_beams (`int`, *optional*):
            Beam width of that decoding (default `config.num_beams`; 1 is greedy).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return_tags = (not self.training) if return_tags is None else return_tags
        if input_ids.shape[1] < 3:
            raise ValueError(
                "inputs must be [CLS] + at least one character + [SEP] (see char_tokenization.encode_chars)"
            )

        if labels is not None and bool((labels >= self.num_labels).any()):
            raise ValueError(f"labels must be tag ids in [0, {self.num_labels}) or -100, got {int(labels.max())}")
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        loss = logits = attentions = tags = None
        if labels is not None:
            step_logits, attentions = self.teacher_forced_logits(
                hidden, attention_mask, labels, bool(output_attentions)
            )
            gold = labels[:, 1:-1].masked_fill(~character_mask(attention_mask)[:, 1:-1], -100)
            loss = nn.functional.cross_entropy(step_logits.flatten(0, 1).float(), gold.flatten(), ignore_index=-100)
            logits = self.align_to_input_ids(step_logits, attention_mask)
        if return_tags:
            tags, logits = self.generate_tags(attention_mask=attention_mask, num_beams=num_beams, hidden=hidden)
        elif logits is None:  # neither labels nor tags asked for: the greedy pass's scores
            _, logits = self.generate_tags(attention_mask=attention_mask, num_beams=1, hidden=hidden)
        if not return_dict:
            return tuple(v for v in (loss, logits, tags) if v is not None)
        return Seq2SeqTaggerOutput(
            loss=loss, logits=logits, tags=tags, attentions=(attentions,) if attentions is not None else None
        )


__all__ = ["Seq2SeqAttnPreTrainedModel", "Seq2SeqAttnTagger", "Seq2SeqTaggerOutput"]
