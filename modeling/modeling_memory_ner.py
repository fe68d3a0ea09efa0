"""PyTorch associated-memory-network tagger (``MemoryNetForTokenClassification``).

Paper: "associated memory network" fine-grained Chinese NER (``shared/papers/associated_memory_ner.txt``).
Equation numbers in docstrings refer to it. Layers: a character encoder for the input and its
memories (eqs. 1-2), the associated memory attention over the memories' label embeddings
(eqs. 3-7), optional multi-head self-attention (eqs. 8-10), an emission layer and a CRF (eqs. 11-12).
Memories are chosen in ``retrieval.py`` and stored in ``memory_bank.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from .configuration_memory_ner import MemoryNetConfig
from .crf import CRFHead, character_mask
from .char_features import FIRST_WORD_ROW, OTHER_WORD, CharFeatures
from .encoders import CharBiLSTMEncoder, EncoderParametersMixin, build_encoder, load_pretrained_encoder
from .memory_bank import BankEncodingCache, MemoryBank
from .tag_schemes import lenient_spans
from .tagging import TaggerMixin


@dataclass
class MemoryNetTokenClassifierOutput(TokenClassifierOutput):
    r"""
    loss (`torch.FloatTensor` of shape `(1,)`, returned when `labels` is given):
        CRF negative log-likelihood (eq. 12), averaged over the batch.
    logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, num_labels)`):
        CRF emission scores.
    tags (`torch.LongTensor` of shape `(batch_size, sequence_length)`, returned in eval mode or with
    `return_tags=True`):
        Viterbi-decoded tag ids aligned with `input_ids`; `-100` on `[CLS]`, `[SEP]` and padding.
    memory_attentions (`torch.FloatTensor` of shape `(batch_size, num_memory, sequence_length, memory_length)`, with
    `output_attentions=True`):
        The normalised memory attention `M_j` of eqs. 4-5.
    """

    tags: torch.LongTensor | None = None
    memory_attentions: torch.FloatTensor | None = None


class MemoryNetPreTrainedModel(EncoderParametersMixin, PreTrainedModel):
    config: MemoryNetConfig
    config_class = MemoryNetConfig
    base_model_prefix = "memory_ner"
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, CRFHead):
            init.uniform_(module.crf.start_transitions, -0.1, 0.1)
            init.uniform_(module.crf.end_transitions, -0.1, 0.1)
            init.uniform_(module.crf.transitions, -0.1, 0.1)
        elif isinstance(module, EntityTypeClassifier) and module.kind == "tagger":
            init.copy_(module.tag_types, module.tag_type_matrix(self.config))
        elif isinstance(module, MemoryNetForTokenClassification) and module.label_embeddings is not None:
            module.reset_label_embeddings()
        elif isinstance(module, MemoryBank):  # only a bank saved without its written characters lacks them
            init.zeros_(module.chars)
        elif isinstance(module, CharFeatures):
            module.reset_parameters()
        elif isinstance(module, CharBiLSTMEncoder):
            # N(0, 1) character embeddings, as nn.Embedding does; the generic N(0, 0.02) is too small for an LSTM
            init.normal_(module.embeddings.weight, 0.0, 1.0)


class MemoryAttention(nn.Module):
    """Associated memory attention (eqs. 3-7), vectorised over the batch and the ``n`` memories.

    For each memory ``a_j``: ``M_j = row-softmax(s a_j^T)`` over the memory's characters (padding,
    ``[CLS]`` and ``[SEP]`` get zero weight), ``L_j = M_j · LabelEmb(labels of a_j)``, and the output
    is ``mean_j L_j`` (the caller concatenates it to ``s``, eq. 7).

    ``LabelEmb(labels of a_j)`` is a one-hot matrix times the embedding table, so eq. 6 and the mean
    are computed as ``(mean_j M_j · onehot_j) · LabelEmb``: the attention mass each label receives,
    then one product with the ``num_labels x l`` table. The result is the same; the cost no longer
    grows with ``l``.
    """

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        memory_tag_ids: torch.LongTensor,
        label_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        query: ``[batch, len_s, d]``; memory: ``[batch, n, len_a, d]``; memory_tag_ids: ``[batch, n, len_a]``
        tag ids, ``-100`` off the memory's characters; label_embeddings: the table ``[num_labels, l]``.
        Returns ``mean_j L_j`` ``[batch, len_s, l]`` and the attention ``M`` ``[batch, n, len_s, len_a]``.
        """
        scores = torch.einsum("bsd,bnad->bnsa", query, memory)  # eq. 3
        mask = (memory_tag_ids != -100)[:, :, None, :]
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1) * mask  # eqs. 4-5; a memory with no character attends to nothing
        index = memory_tag_ids.clamp(min=0)[:, :, None, :].expand_as(weights)
        label_mass = weights.new_zeros(*weights.shape[:3], label_embeddings.shape[0]).scatter_add_(-1, index, weights)
        fused = label_mass.mean(dim=1) @ label_embeddings  # eqs. 6-7: mean_j M_j · LabelEmb(labels of a_j)
        return fused, weights


def swap_shared_entities(
    input_ids: torch.LongTensor,
    labels: torch.LongTensor,
    memory_input_ids: torch.LongTensor,
    memory_tag_ids: torch.LongTensor,
    id2label: dict[int, str],
    scheme: str,
    prob: float,
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Training augmentation for the editable memory: rewrite entities the input shares with its memories.

    A gold entity of the input whose string a memory also labels with the same type is, with probability
    ``prob``, replaced by random entity characters (drawn from the batch's gold entities), in the input and in
    every memory of that input that holds it, so the tags stay right. The encoder cannot know such a string;
    the only evidence for it is the memory's labels, as for an entity a user adds to the bank after training
    (``add_memories``). Without it, every entity the memories share with a training input is one the encoder
    has learnt anyway, and the model learns to rely on memories less than an added memory needs.
    Returns new ``input_ids`` and ``memory_input_ids``; the labels do not change.
    """
    if prob <= 0:
        return input_ids, memory_input_ids

    def entities(ids: list[int], tags: list[int]) -> dict[tuple, list[int]]:
        """(type, char ids) -> the token positions where each occurrence starts."""
        positions = [i for i, t in enumerate(tags) if t != -100]
        found: dict[tuple, list[int]] = {}
        for span in lenient_spans([id2label[tags[i]] for i in positions], scheme):
            start = positions[span.start]
            found.setdefault((span.type, tuple(ids[start : start + span.end - span.start])), []).append(start)
        return found

    query_ids, query_tags = input_ids.tolist(), labels.tolist()
    mem_ids, mem_tags = memory_input_ids.tolist(), memory_tag_ids.tolist()
    pairs = []  # per input row: (its entities, each of its memories' entities)
    pool = []
    for b in range(len(query_ids)):
        own = entities(query_ids[b], query_tags[b])
        held = [entities(mem_ids[b][j], mem_tags[b][j]) for j in range(len(mem_ids[b]))]
        pairs.append((own, held))
        pool.extend(c for _, chars in own for c in chars)
    if not pool:
        return input_ids, memory_input_ids
    pool_t = torch.tensor(pool, dtype=input_ids.dtype)
    new_input, new_memory = input_ids.clone(), memory_input_ids.clone()
    for b, (own, held) in enumerate(pairs):
        for key, starts in own.items():
            holders = [j for j, ents in enumerate(held) if key in ents]
            if not holders or torch.rand(()) >= prob:
                continue
            width = len(key[1])
            chars = pool_t[torch.randint(len(pool_t), (width,))]
            for start in starts:
                new_input[b, start : start + width] = chars
            for j in holders:
                for start in held[j][key]:
                    new_memory[b, j, start : start + width] = chars
    return new_input, new_memory


class EntityTypeClassifier(nn.Module):
    """Multi-label classifier of the entity types a sentence contains (section 2.1, ``category`` retrieval).

    It has its own encoder (the paper trains a separate BERT multi-label model), of the tagger's kind
    unless ``config.type_classifier_encoder_type`` / ``_config`` say otherwise. With
    ``config.type_classifier_kind="pooled"`` the encoder is max-pooled over the characters and
    scored with one logit per entity type; with ``"tagger"`` it is an encoder-CRF tagger trained on
    the NER tags, and a type is present when a Viterbi-decoded tag carries it. Either way
    ``forward`` returns ``[batch, num_types]`` logits (the tagger's are ``±TAGGER_LOGIT``).
    """

    TAGGER_LOGIT = 10.0

    def __init__(self, config: MemoryNetConfig):
        super().__init__()
        self.kind = config.type_classifier_kind
        self.encoder = build_encoder(config, *config.type_classifier_encoder)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.build_head(config)

    def build_head(self, config: MemoryNetConfig) -> None:
        """The label-dependent layers (new, untrained): one logit per entity type, or the tagger's tag layer and
        CRF."""
        if self.kind == "pooled":
            self.classifier = nn.Linear(self.encoder.output_size, len(config.entity_types))
        else:
            self.classifier = nn.Linear(self.encoder.output_size, config.num_labels)
            self.crf = CRFHead(config.num_labels)
            # derived from the config, not saved: set again by ``_init_weights`` when loaded with from_pretrained
            self.register_buffer("tag_types", self.tag_type_matrix(config), persistent=False)

    @staticmethod
    def tag_type_matrix(config: MemoryNetConfig) -> torch.Tensor:
        """``[num_labels, num_types]`` 0/1: which entity type each tag of ``config.id2label`` carries."""
        types = config.entity_types
        matrix = torch.zeros(config.num_labels, len(types))
        for tag, label in config.id2label.items():
            if label != "O":
                matrix[int(tag), types.index(label.split("-", 1)[1])] = 1
        return matrix

    def emissions(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Tagger kind: per-token tag scores ``[batch, length, num_labels]`` for its CRF."""
        return self.classifier(self.dropout(self.encoder(input_ids, attention_mask=attention_mask)))

    def types_from_emissions(self, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Tagger kind: ``±TAGGER_LOGIT`` per type, positive when a decoded tag has that type."""
        tags = self.crf.decode(emissions, attention_mask)
        present = self.tag_types[tags.clamp(min=0)].masked_fill((tags < 0)[..., None], 0).amax(dim=1)
        return (2 * present - 1) * self.TAGGER_LOGIT

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "tagger":
            return self.types_from_emissions(self.emissions(input_ids, attention_mask), attention_mask)
        hidden = self.encoder(input_ids, attention_mask=attention_mask)
        chars = character_mask(attention_mask)
        chars[:, 0] |= ~chars.any(dim=1)  # an input without characters pools its [CLS]
        pooled = hidden.masked_fill(~chars[..., None], torch.finfo(hidden.dtype).min).max(dim=1).values
        return self.classifier(self.dropout(pooled))


class SelfAttentionBlock(nn.Module):
    """Multi-head self-attention over the fused features (eqs. 8-10), with a residual projection."""

    def __init__(self, input_size: int, size: int, num_heads: int, dropout: float):
        super().__init__()
        self.project = nn.Linear(input_size, size)
        self.attention = nn.MultiheadAttention(size, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor, need_weights: bool = False):
        x = self.project(features)
        if need_weights or self.training:
            attended, weights = self.attention(
                x, x, x, key_padding_mask=~attention_mask.bool(), need_weights=need_weights, average_attn_weights=False
            )
        else:
            attended, weights = self._attend(x, attention_mask), None
        return self.norm(x + self.dropout(attended)), weights

    def _attend(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``self.attention(x, x, x)`` without weights, from its own parameters: one input projection,
        ``scaled_dot_product_attention``, the output projection. The same numbers (to float rounding) in
        about two thirds of the time of ``nn.MultiheadAttention``'s native CPU path (11.6 against 16.2 ms for
        32 windows of 52 characters, size 256, one thread)."""
        mha = self.attention
        batch, length, size = x.shape
        heads = mha.num_heads
        q, k, v = (
            nn.functional.linear(x, mha.in_proj_weight, mha.in_proj_bias)
            .view(batch, length, 3, heads, size // heads)
            .permute(2, 0, 3, 1, 4)
        )
        keys = attention_mask.bool()[:, None, None, :]
        attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keys)
        return mha.out_proj(attended.transpose(1, 2).reshape(batch, length, size))


class MemoryNetForTokenClassification(TaggerMixin, MemoryNetPreTrainedModel):
    """Character encoder -> (memory attention) -> (self-attention) -> emissions -> CRF.

    With ``num_memory=0``, a BiLSTM encoder and no self-attention this is the BiLSTM-CRF baseline of
    both papers.
    """

    def __init__(self, config: MemoryNetConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.encoder = build_encoder(config)
        features = self.encoder.output_size
        self.memory_bank = self.label_embeddings = self.memory_attention = None
        if config.num_memory > 0:
            self.label_embeddings = nn.Embedding(config.num_labels, config.label_embedding_size)
            self.memory_attention = MemoryAttention()
            if config.memory_bank_size:
                self.memory_bank = MemoryBank(
                    config.memory_bank_size,
                    config.memory_bank_length,
                    config.memory_pos_length,
                    len(config.entity_types),
                    config.token_table_size,
                )
            features += config.label_embedding_size  # e = [s ; mean_j L_j], eq. 7
        self.type_classifier = EntityTypeClassifier(config) if config.uses_type_classifier else None
        self.memory_cache = BankEncodingCache(config.memory_cache_size)
        self._bank_index = None  # (the bank it indexes, {sentences_only: retrieval.BankIndex}), built on first use
        self._taught_read = None  # (the bank, its taught entities as the model reads them)
        self._taught_lexicon = None  # (the bank whose taught entities the lexicon features hold, in lexicon or not)
        self.self_attention = None
        if config.use_self_attention:
            self.self_attention = SelfAttentionBlock(
                features, config.self_attention_size, config.num_attention_heads, config.hidden_dropout_prob
            )
            features = config.self_attention_size
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(features, config.num_labels)
        self.crf = CRFHead(config.num_labels)
        self.post_init()

    @classmethod
    def from_encoder_pretrained(cls, encoder_name_or_path: str, **config_kwargs) -> "MemoryNetForTokenClassification":
        """A new tagger around a pretrained transformers encoder (Hub id when online, or a local folder)."""
        encoder = load_pretrained_encoder(encoder_name_or_path)
        config = MemoryNetConfig(
            encoder_type="transformers", encoder_config=encoder.model.config.to_dict(), **config_kwargs
        )
        model = cls(config)
        model.encoder = encoder
        return model

    def get_input_embeddings(self) -> nn.Module:
        if isinstance(self.encoder, CharBiLSTMEncoder):
            return self.encoder.get_input_embeddings()
        return self.encoder.model.get_input_embeddings()

    def reset_labels(self, id2label: dict[int, str]) -> None:
        """Take a new label set (fine-tuning on other entity types): the label-dependent parts, the
        emission layer, the CRF, the label embeddings and the entity-type classifier's head, are
        initialised anew; the encoders and the self-attention keep their weights. The memory bank
        is filled again from the new training sentences (``apply_memory_plan``)."""
        old_size = self.config.label_embedding_size
        self.config.id2label = dict(id2label)
        self.config.label2id = {label: i for i, label in self.config.id2label.items()}
        if self.config.num_memory > 0 and self.config.label_embedding_size != old_size:
            raise ValueError(
                "the new labels have other tag prefixes than the model's: fine-tune in the model's tag scheme "
                f"({self.config.tag_scheme})"
            )
        self.num_labels = self.config.num_labels
        device = self.classifier.weight.device
        self.classifier = nn.Linear(self.classifier.in_features, self.num_labels).to(device)
        self.crf = CRFHead(self.num_labels).to(device)
        new = [self.classifier, self.crf]
        if self.label_embeddings is not None:
            self.label_embeddings = nn.Embedding(self.num_labels, self.config.label_embedding_size).to(device)
            new.append(self.label_embeddings)
        if self.type_classifier is not None:
            self.type_classifier.build_head(self.config)
            self.type_classifier.to(device)
            new.append(self.type_classifier.classifier)
            if self.type_classifier.kind == "tagger":
                new.append(self.type_classifier.crf)
        for module in new:
            module.apply(self._init_weights)
        if self.label_embeddings is not None:
            self.reset_label_embeddings()
        self.memory_bank = None  # its labels and type sets are of the old label set
        self.memory_cache.clear()

    # ------------------------------------------------------------------------------------------
    # memory (section 2.1-2.3)

    @torch.no_grad()
    def reset_label_embeddings(self, type_vectors: dict[str, torch.Tensor] | None = None) -> None:
        """Label embedding = [type vector ; one-hot position bit] (section 2.2, figure 2).

        ``type_vectors`` maps an entity type to the mean pretrained vector of its training entities
        (the paper's initialisation); without it the type part is N(0, 0.02). ``O`` has a zero type part.
        """
        weight = self.label_embeddings.weight
        size, prefixes = self.config.label_type_size, self.config.position_prefixes
        weight.zero_()
        for idx, label in self.config.id2label.items():
            prefix, _, etype = label.partition("-")
            if etype:
                vec = type_vectors.get(etype) if type_vectors else None
                weight[idx, :size] = (
                    torch.as_tensor(vec, dtype=weight.dtype)
                    if vec is not None
                    else torch.randn(size) * self.config.initializer_range
                )
            weight[idx, size + prefixes.index(prefix)] = 1.0

    @torch.no_grad()
    def set_memory_bank(self, bank: MemoryBank) -> None:
        """Hold ``bank`` (``MemoryBank.from_sentences``) as the sentences memories are drawn from; saved with the
        model."""
        if self.config.added_entities:
            raise ValueError(
                f"this model has {len(self.config.added_entities)} entities taught by name, whose memories the bank "
                "holds: remove_entities them before setting another bank, and add_entities them again after"
            )
        self.config.memory_pos_length = bank.pos.shape[1]
        self.config.token_table_size = len(bank.token_chars)
        self._replace_memory_bank(bank.to(self.device), None)

    @torch.no_grad()
    def apply_memory_plan(self, plan) -> None:
        """Take what the memory stage prepared (``data_scripts.memory_data.prepare_memories``): its
        bank (``plan.bank``) and, for ``category`` / ``hybrid`` retrieval, its trained entity-type
        classifier (``plan.type_classifier_state``), frozen from then on (section 2.1)."""
        self.set_memory_bank(plan.bank)
        if plan.type_classifier_state is not None:
            self.type_classifier.load_state_dict(plan.type_classifier_state)
            self.type_classifier.requires_grad_(False)

    @torch.no_grad()
    def add_memories(
        self,
        texts: list[str],
        tags: list[list[str]] | None = None,
        tokenizer=None,
        entities: list[list[dict]] | None = None,
    ) -> list[int]:
        """Append labelled sentences to the memory bank of a trained model, with no retraining.

        Give each text its ``tags`` (one per character, in ``config.tag_scheme``) or its ``entities``
        (dicts with ``start``, ``end`` and ``entity_group``, as the pipeline returns them). From the
        next call on, retrieval can bring them (the retrieval index is rebuilt, the bank encodings of
        the sentences already there are kept), and ``save_pretrained`` saves them with the model.
        Returns their bank indices (they come after the bank's other sentences, before the memories of the
        entities taught by name). This is how a deployed model learns new entities by example; ``add_entities``
        teaches them by name.
        """
        from .tag_schemes import spans_to_tags, tags_to_spans

        if self.memory_bank is None:
            raise ValueError("this model has no memory bank to add to (train it with num_memory > 0)")
        if tokenizer is None:
            raise ValueError("add_memories needs the model's tokenizer, to encode the texts as the model reads them")
        if (tags is None) == (entities is None):
            raise ValueError(
                "give add_memories either tags (one per character) or entities (start, end, entity_group) for every "
                "text"
            )
        texts = [texts] if isinstance(texts, str) else list(texts)
        scheme, label2id, window = self.config.tag_scheme, self.config.label2id, self.config.max_length - 2
        if entities is not None:
            if len(entities) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(entities)} entity lists")
            tags = [
                spans_to_tags([(e["entity_group"], e["start"], e["end"]) for e in ents], len(t), scheme)
                for t, ents in zip(texts, entities)
            ]
        if len(tags) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(tags)} tag lists")
        for k, (text, row) in enumerate(zip(texts, tags)):
            if not text or len(text) > window:
                raise ValueError(
                    f"memory {k}: a memory sentence has 1 to {window} characters (the model's window), this one "
                    f"{len(text)}"
                )
            if len(row) != len(text):
                raise ValueError(f"memory {k}: {len(text)} characters but {len(row)} tags")
            unknown = sorted(set(row) - set(label2id))
            if unknown:
                raise ValueError(
                    f"memory {k}: tags {unknown} are not among the model's labels ({scheme}: {sorted(label2id)})"
                )
            tags_to_spans(list(row), scheme)  # raises on an ill-formed sequence
        at = self.num_sentence_memories
        self._insert_memories(at, texts, tags, tokenizer)
        return list(range(at, at + len(texts)))

    @torch.no_grad()
    def remove_memories(self, indices: list[int]) -> None:
        """Remove bank sentences (bank indices, as ``add_memories`` and ``return_memories`` give them);
        the sentences after them move up. No retraining. The memories of entities taught by name are removed
        with ``remove_entities``."""
        size = self.num_sentence_memories if self.memory_bank is not None else 0
        drop = set(int(i) for i in indices)
        if any(not 0 <= i < size for i in drop):
            raise ValueError(
                f"bank indices must lie in [0, {size}), got {sorted(i for i in drop if not 0 <= i < size)}"
                + (" (the rows after them hold the added entities: use remove_entities)" if size else "")
            )
        self._keep_memories(torch.tensor([i for i in range(len(self.memory_bank)) if i not in drop], dtype=torch.long))

    @property
    def num_sentence_memories(self) -> int:
        """The bank's labelled sentences: every row but the last ``len(config.added_entities)``, which hold the
        memories of the entities taught by name (``add_entities``), one an entry, in the dictionary's order."""
        return len(self.memory_bank) - len(self.config.added_entities) if self.memory_bank is not None else 0

    @torch.no_grad()
    def write_entity_memories(self, added: dict[str, str], tokenizer, memory_form: str) -> None:
        """Each new dictionary entry becomes a memory at the end of the bank, in ``memory_form``
        (``entity_dictionary.ENTITY_MEMORY_FORMS``): ``entity`` retrieval then finds it in any query that contains
        its string."""
        from .entity_dictionary import EntityFileError
        from .tag_schemes import spans_to_tags

        if self.memory_bank is None:
            return
        if tokenizer is None:
            raise ValueError("add_entities needs the model's tokenizer, to write the entities as the model reads them")
        window = self.config.max_length - 2
        too_long = [s for s in added if len(s) > window]
        if too_long:
            raise EntityFileError(
                f"entity strings longer than the model's window of {window} characters: {too_long[:5]}"
            )
        templates = self.entity_templates() if memory_form == "template" else {}
        texts, tags = [], []
        for string, etype in added.items():
            entity_tags = spans_to_tags([(etype, 0, len(string))], len(string), self.config.tag_scheme)
            template = templates.get(etype)
            if template is not None and len(template[0]) - (template[2][1] - template[2][0]) + len(string) <= window:
                text, row, (a, b) = template
                texts.append(text[:a] + string + text[b:])
                tags.append(row[:a] + entity_tags + row[b:])
            else:
                texts.append(string)
                tags.append(entity_tags)
        self._insert_memories(len(self.memory_bank), texts, tags, tokenizer)

    @torch.no_grad()
    def drop_entity_memories(self, positions: list[int]) -> None:
        if self.memory_bank is None or not positions:
            return
        drop = {self.num_sentence_memories + k for k in positions}
        self._keep_memories(torch.tensor([i for i in range(len(self.memory_bank)) if i not in drop], dtype=torch.long))

    MIN_TEMPLATE_CONTEXT = 4  # characters a template sentence has besides its entity

    def entity_templates(self) -> dict[str, tuple[str, list[str], tuple[int, int]]]:
        """Per entity type, the labelled sentence a dictionary entry of that type is written into (the ``template``
        memory form): the shortest bank sentence whose only entity is of that type and which has at least
        ``MIN_TEMPLATE_CONTEXT`` other characters (ties: the first). Type -> (text, tags, the entity's span)."""
        from .tag_schemes import split_tag, tags_to_spans

        bank, id2label, types = self.memory_bank, self.config.id2label, self.config.entity_types
        labels = bank.labels[: self.num_sentence_memories].long().cpu().numpy()
        start_type = np.full(len(id2label), -1)  # tag id -> the type it begins, or -1
        inside = np.zeros(len(id2label), dtype=bool)  # tag id -> part of an entity
        for idx, label in id2label.items():
            prefix, etype = split_tag(label)
            inside[int(idx)] = etype is not None
            if prefix in ("B", "S"):
                start_type[int(idx)] = types.index(etype)
        valid = labels >= 0
        begins = np.where(valid, start_type[labels.clip(min=0)], -1)
        count, the_type = (begins >= 0).sum(axis=1), begins.max(axis=1)
        context = valid.sum(axis=1) - (valid & inside[labels.clip(min=0)]).sum(axis=1)
        out = {}
        for t, etype in enumerate(types):
            rows = np.flatnonzero((count == 1) & (the_type == t) & (context >= self.MIN_TEMPLATE_CONTEXT))
            if not len(rows):
                continue
            row = int(rows[np.argmin(valid[rows].sum(axis=1))])  # argmin: the first of the shortest
            tags = [id2label[int(i)] for i in labels[row] if i >= 0]
            (span,) = tags_to_spans(tags, self.config.tag_scheme)
            out[etype] = (bank.written_texts([row])[0], tags, (span.start, span.end))
        return out

    @torch.no_grad()
    def _insert_memories(self, at: int, texts: list[str], tags: list[list[str]], tokenizer) -> None:
        """Write labelled sentences (tags checked) into the bank at row ``at``; the rows from there on move down."""
        from .char_tokenization import encode_chars
        from .retrieval import pos_strings
        from .tag_schemes import tags_to_spans

        label2id, types = self.config.label2id, self.config.entity_types
        present = np.zeros((len(texts), len(types)), dtype=np.uint8)
        for k, row in enumerate(tags):
            for span in tags_to_spans(list(row), self.config.tag_scheme):
                present[k, types.index(span.type)] = 1
        enc = encode_chars(tokenizer, [list(t) for t in texts], self.config.max_length)
        labels = [[-100] + [label2id[t] for t in row] + [-100] for row in tags]
        old = len(self.memory_bank)
        bank = self.memory_bank.extended(enc["input_ids"], labels, present, pos_strings(texts), texts)
        order = torch.cat([torch.arange(at), torch.arange(old, old + len(texts)), torch.arange(at, old)])
        self._replace_memory_bank(
            bank if at == old else bank.subset(order), torch.where(order < old, order, torch.full_like(order, -1))
        )

    def _keep_memories(self, keep: torch.LongTensor) -> None:
        """Keep the bank rows ``keep`` (bank indices, in order)."""
        if len(keep) <= self.config.num_memory:
            raise ValueError(f"a bank must keep more than num_memory={self.config.num_memory} sentences")
        self._replace_memory_bank(self.memory_bank.subset(keep), keep)

    def _replace_memory_bank(self, bank: MemoryBank, old_index: torch.LongTensor | None) -> None:
        """``old_index``: the old bank index of each new sentence (-1: new), to keep their cached
        encodings; None: a bank of other sentences."""
        self.config.memory_bank_size = len(bank)
        self.config.memory_bank_length = bank.input_ids.shape[1]
        self.config.memory_pos_length = bank.pos.shape[1]
        self.memory_bank = bank
        if old_index is None:
            self.memory_cache.clear()
        else:
            self.memory_cache.remap(old_index, bank.input_ids.shape[1])

    def train(self, mode: bool = True):
        if mode:  # training changes the weights the bank encodings were computed with; eval() changes nothing
            self.memory_cache.clear()
            self._taught_lexicon = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self.memory_cache.clear()
        self._bank_index = self._taught_read = self._taught_lexicon = None
        return super().load_state_dict(*args, **kwargs)

    def tag_probabilities(self, logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The CRF's marginal tag probabilities of each character (``CRFHead.marginals``)."""
        return self.crf.marginals(logits, attention_mask)

    def bank_index(self, sentences_only: bool = False):
        """The memory bank's ``retrieval.BankIndex`` (TF-IDF, entity strings), built when first needed
        and again whenever the bank changes; ``lexical``, ``entity`` and ``hybrid`` retrieval read it.
        ``sentences_only``: the index of the labelled sentences alone, without the taught entities' memories (what
        the model read before they were taught)."""
        from .retrieval import BankIndex

        bank = self.memory_bank
        if bank is None:
            raise ValueError("this model has no memory bank (train it with num_memory > 0)")
        if self._bank_index is None or self._bank_index[0] is not bank:  # a new bank (add / remove / set)
            self._bank_index = (bank, {})
        indexes = self._bank_index[1]
        if sentences_only not in indexes:
            rows = self.num_sentence_memories if sentences_only else None
            indexes[sentences_only] = BankIndex.of_bank(bank, self.config.id2label, self.config.tag_scheme, rows)
        return indexes[sentences_only]

    @torch.no_grad()
    def retrieve_memories(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        method: str | None = None,
        sentences_only: bool = False,
    ) -> torch.LongTensor:
        """Bank indices ``[batch, n]`` of each input's memories, chosen by ``retrieval.rank_memories``;
        ``sentences_only``: none of the memories of the entities taught by name.

        A query never retrieves a bank sentence with its own text, in training (where that would
        hand the model its gold labels) and at inference alike, as ``train.py`` evaluates."""
        from .retrieval import CLASSIFIER_METHODS, INDEX_METHODS, POS_METHODS, pos_strings, rank_memories

        if self.memory_bank is None or not len(self.memory_bank.token_chars):
            raise ValueError("this model has no memory bank to retrieve from (train it with num_memory > 0)")
        method = method or self.config.memory_method
        if method == "gold_category":
            raise ValueError(
                "gold_category retrieval needs gold entity types, which raw input does not have; pass memory_ids"
            )
        query_types = (
            self.predict_entity_types(input_ids, attention_mask).cpu().numpy()
            if method in CLASSIFIER_METHODS
            else None
        )
        texts = self.memory_bank.texts(input_ids, attention_mask)
        bank = self.memory_bank
        index = self.bank_index(sentences_only) if method in INDEX_METHODS else None
        query_pos = (
            pos_strings(texts) if method in POS_METHODS else [""] * len(texts)
        )  # jieba only where the ranking reads POS
        ids = rank_memories(
            method,
            self.config.num_memory,
            bank.pos_strings(),
            bank.types.cpu().numpy(),
            query_pos,
            query_types,
            query_texts=texts,
            bank_texts=bank.sentence_texts(),
            index=index,
            rows_limit=self.num_sentence_memories if sentences_only else None,
        )
        return torch.as_tensor(ids, device=input_ids.device)

    @torch.no_grad()
    def predict_entity_types(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor, threshold: float = 0.5
    ) -> torch.LongTensor:
        """``[batch, num_types]`` 0/1: the entity types the classifier predicts for each input."""
        if self.type_classifier is None:
            raise ValueError(
                "this model has no entity-type classifier (it is trained with memory_method 'category' or 'hybrid')"
            )
        was_training = self.type_classifier.training
        self.type_classifier.eval()
        probs = torch.sigmoid(self.type_classifier(input_ids, attention_mask))
        self.type_classifier.train(was_training)
        return (probs > threshold).long()

    @torch.no_grad()
    def _keep_taught_entities(self, input_ids, attention_mask, token_type_ids, memory_ids, emissions, tags):
        """Each input read again as the model read it before the entities were taught (retrieval from the labelled
        sentences alone, ``bank_index(sentences_only=True)``) where that changes its memories, and the two readings
        merged by ``entity_dictionary.keep_taught_entities`` (the emissions of a kept taught entity's characters
        are the first reading's, the others the second's)."""
        from .entity_dictionary import keep_taught_tag_ids

        own_ids = self.retrieve_memories(input_ids, attention_mask, sentences_only=True)
        rows = (own_ids != memory_ids).any(dim=1).nonzero().flatten()  # where the memories differ, so does the reading
        if not len(rows):
            return emissions, tags
        ids, mask = input_ids[rows], attention_mask[rows]
        types = token_type_ids[rows] if token_type_ids is not None else None
        own = self(ids, attention_mask=mask, token_type_ids=types,
                   memory_ids=own_ids[rows], return_tags=True)  # fmt: skip
        read_emissions, read_tags = emissions, tags
        emissions, tags = emissions.clone(), tags.clone()
        taught = self._taught_as_read()
        for k, (r, text) in enumerate(zip(rows.tolist(), self.memory_bank.texts(ids, mask))):
            emissions[r], tags[r] = own.logits[k], own.tags[k]
            chars = character_mask(mask[k : k + 1])[0].nonzero().flatten()
            merged = keep_taught_tag_ids(text, own.tags[k, chars].tolist(), read_tags[r, chars].tolist(),
                                         self.config.id2label, self.config.tag_scheme, taught)  # fmt: skip
            if merged is not None:
                new, from_read = merged
                tags[r, chars] = torch.tensor(new, device=tags.device)
                kept = chars[torch.tensor(from_read, device=chars.device)]
                emissions[r, kept] = read_emissions[r, kept]
        return emissions, tags

    def _taught_as_read(self) -> dict[str, str]:
        """``entity_dictionary.taught_as_read`` of this bank's taught entities' memories (kept while the bank is)."""
        from .entity_dictionary import taught_as_read

        bank, first = self.memory_bank, self.num_sentence_memories
        if self._taught_read is None or self._taught_read[0] is not bank:
            labels = [[self.config.id2label[t] for t in row if t != -100] for row in bank.labels[first:].tolist()]
            read = taught_as_read(bank.sentence_texts()[first:], labels, self.added_entities, self.config.tag_scheme)
            self._taught_read = (bank, read)
        return self._taught_read[1]

    @torch.no_grad()
    def _teach_lexicon(self) -> None:
        """The taught entities enter the encoder's lexicon features (softword, word sets; ``CharFeatures.
        set_taught_words``), each as its memory spells it in token ids, with the mean word vector of the lexicon
        words that are entities of its type in the labelled sentences (the type's evidence in the word sets).
        Done when the bank changes; the bank's cached encodings are dropped when the taught words do."""
        features = getattr(self.encoder, "features", None)
        bank = self.memory_bank
        state = (bank, self.config.taught_entities_in_lexicon)
        if features is None or not features.reads_lexicon or bank is None or self._taught_lexicon == state:
            return
        from .entity_dictionary import taught_as_read
        from .tag_schemes import tags_to_spans

        first, scheme, id2label = self.num_sentence_memories, self.config.tag_scheme, self.config.id2label

        def read(rows: range):  # (token ids, tags) of bank rows, characters only
            out = []
            for ids, labels in zip(bank.input_ids[rows].tolist(), bank.labels[rows].tolist()):
                kept = [(i, id2label[t]) for i, t in zip(ids, labels) if t != -100]
                out.append((tuple(i for i, _ in kept), [t for _, t in kept]))
            return out

        taught = read(range(first, len(bank)))
        words = taught_as_read([ids for ids, _ in taught], [tags for _, tags in taught], self.added_entities, scheme)
        if not self.config.taught_entities_in_lexicon:
            words = {}
        self._taught_lexicon = state  # a tuple: a module attribute would be registered as a submodule
        if not words and not features.taught_words:
            return
        vectors = None
        if features.word_embeddings is not None and words:
            table = features.word_embeddings.weight
            by_type: dict[str, list[tuple[int, ...]]] = {}
            for ids, tags in read(range(first)):
                for span in tags_to_spans(tags, scheme, strict=False):
                    by_type.setdefault(span.type, []).append(ids[span.start : span.end])
            type_vector = {}
            for etype in set(words.values()):
                rows = [r for r in features.lexicon_rows(by_type.get(etype, [])) if r >= FIRST_WORD_ROW]
                type_vector[etype] = table[rows].mean(0) if rows else table[OTHER_WORD]
            vectors = torch.stack([type_vector[t] for t in words.values()])
        features.set_taught_words(list(words), vectors)
        self.memory_cache.clear()

    def _encode_memories(self, memory_input_ids, memory_attention_mask, memory_ids=None) -> torch.Tensor:
        """Encoder features of the memories ``[batch, n, len_a, d]`` (eq. 2, the same encoder as the input).

        In eval mode, memories given as bank indices are encoded once and reused until the weights
        change (``train()`` or ``load_state_dict`` clears the cache; ``config.memory_cache_size`` bounds it),
        so tagging with memory costs little more than tagging without it.
        """
        batch, n, width = memory_input_ids.shape
        if self.training or memory_ids is None or self.memory_bank is None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.memory_gradient):
                flat = self.encoder(
                    memory_input_ids.view(batch * n, width),
                    attention_mask=memory_attention_mask.view(batch * n, width),
                )
            return flat.view(batch, n, width, -1)
        out = self.memory_cache.lookup(self.memory_bank, memory_ids, self.encoder)
        if out.shape[2] < width:  # memory_input_ids padded wider than the memories themselves
            out = nn.functional.pad(out, (0, 0, 0, width - out.shape[2]))
        return out

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        memory_ids: torch.LongTensor | None = None,
        memory_input_ids: torch.LongTensor | None = None,
        memory_attention_mask: torch.Tensor | None = None,
        memory_tag_ids: torch.LongTensor | None = None,
        return_tags: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MemoryNetTokenClassifierOutput | tuple:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            `[CLS]`, one token per character, `[SEP]` (see `char_tokenization.encode_chars`).
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Tag ids aligned with `input_ids`, `-100` on `[CLS]`, `[SEP]` and padding. The loss is
            computed only when they are given.
        memory_ids (`torch.LongTensor` of shape `(batch_size, num_memory)`, *optional*):
            Bank indices of each input's memory sentences. With `num_memory > 0` and neither these
            nor `memory_input_ids`, memories are retrieved from the saved bank.
        memory_input_ids, memory_attention_mask, memory_tag_ids (`(batch_size, num_memory, memory_length)`,
        *optional*):
            The memories themselves (as `DataCollatorForMemoryNER` builds them); `memory_tag_ids`
            are their tag ids, `-100` off characters (not named `*labels*`, so that `Trainer` takes only
            `labels` for the gold labels).
        return_tags (`bool`, *optional*):
            Viterbi-decode the tags; defaults to `not self.training`.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return_tags = (not self.training) if return_tags is None else return_tags

        if self.config.num_memory == 0 and any(x is not None for x in (memory_ids, memory_input_ids, memory_tag_ids)):
            raise ValueError(
                "memories were given to a model with num_memory=0 (the plain encoder-CRF); train it with num_memory > "
                "0"
            )
        from_bank = self.config.num_memory > 0 and memory_input_ids is None
        if not self.training:
            self._teach_lexicon()
        if from_bank:
            if memory_ids is None:
                memory_ids = self.retrieve_memories(input_ids, attention_mask)
            if self.memory_bank is None:
                raise ValueError(
                    "memory_ids given but the model has no memory bank; pass memory_input_ids/memory_tag_ids"
                )
            memory_input_ids, memory_attention_mask, memory_tag_ids = self.memory_bank.gather(memory_ids)
        if self.training and labels is not None and memory_input_ids is not None:
            input_ids, memory_input_ids = swap_shared_entities(
                input_ids,
                labels,
                memory_input_ids,
                memory_tag_ids,
                self.config.id2label,
                self.config.tag_scheme,
                self.config.memory_entity_swap_prob,
            )
        hidden = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)  # eq. 1
        memory_attentions = None
        if self.config.num_memory > 0:
            memory = self._encode_memories(memory_input_ids, memory_attention_mask, memory_ids)  # eq. 2
            fused, memory_attentions = self.memory_attention(
                hidden, memory, memory_tag_ids, self.label_embeddings.weight
            )  # eqs. 3-6
            hidden = torch.cat([hidden, fused], dim=-1)  # eq. 7
        attentions = None
        if self.self_attention is not None:
            hidden, weights = self.self_attention(
                hidden, attention_mask, need_weights=bool(output_attentions)
            )  # eqs. 8-10
            attentions = (weights,) if output_attentions else None
        emissions = self.classifier(self.dropout(hidden))

        loss = self.crf(emissions, attention_mask, labels) if labels is not None else None  # eqs. 11-12
        tags = self.crf.decode(emissions, attention_mask) if return_tags else None
        if tags is not None and from_bank and self.config.added_entities and self.config.taught_entities_only:
            emissions, tags = self._keep_taught_entities(input_ids, attention_mask, token_type_ids, memory_ids,
                                                         emissions, tags)  # fmt: skip
        if not return_dict:
            return tuple(v for v in (loss, emissions, tags) if v is not None)
        return MemoryNetTokenClassifierOutput(
            loss=loss,
            logits=emissions,
            tags=tags,
            attentions=attentions,
            memory_attentions=memory_attentions if output_attentions else None,
        )


class MemoryNetForEntityTypes(MemoryNetPreTrainedModel):
    """The entity-type classifier alone, for its own training run (BCE loss, or the CRF's for the tagger kind).

    ``train.py``'s memory stage trains it first and retrieves memories by ``category`` with it; its
    weights then go into ``MemoryNetForTokenClassification.type_classifier`` (``apply_memory_plan``),
    so inference needs no gold labels.
    """

    encoder_modules = ("type_classifier.encoder",)

    def __init__(self, config: MemoryNetConfig):
        super().__init__(config)
        self.type_classifier = EntityTypeClassifier(config)
        self.post_init()

    @classmethod
    def from_encoder_pretrained(cls, encoder_name_or_path: str, config: MemoryNetConfig) -> "MemoryNetForEntityTypes":
        """A classifier around a pretrained transformers encoder (Hub id when online, or a local folder)."""
        model = cls(config)
        model.type_classifier.encoder = load_pretrained_encoder(encoder_name_or_path)
        return model

    def forward(
        self, input_ids, attention_mask=None, entity_types=None, labels=None, return_dict=None, **kwargs
    ) -> SequenceClassifierOutput:
        r"""
        entity_types (`torch.LongTensor` of shape `(batch_size, num_types)`, *optional*):
            0/1 gold entity types: the loss of the `pooled` classifier (binary cross-entropy).
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Gold tag ids aligned with `input_ids`: the loss of the `tagger` kind (CRF negative
            log-likelihood). A loss is computed only when its gold labels are given.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        clf = self.type_classifier
        loss = logits = None
        if clf.kind == "tagger":
            if entity_types is not None and labels is None:
                raise ValueError("the tagger kind of entity-type classifier trains on the NER tags: pass labels")
            emissions = clf.emissions(input_ids, attention_mask)
            if labels is not None:
                loss = clf.crf(emissions, attention_mask, labels)
            if not self.training:  # Viterbi only where predictions are read
                logits = clf.types_from_emissions(emissions, attention_mask)
        else:
            logits = clf(input_ids, attention_mask)
            if entity_types is not None:
                loss = nn.functional.binary_cross_entropy_with_logits(logits, entity_types.float())
        return SequenceClassifierOutput(loss=loss, logits=logits)


__all__ = [
    "swap_shared_entities",
    "MemoryNetForEntityTypes",
    "MemoryNetForTokenClassification",
    "MemoryNetPreTrainedModel",
    "MemoryNetTokenClassifierOutput",
]
