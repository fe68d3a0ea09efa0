"""Configuration of :class:`MemoryNetForTokenClassification` (associated-memory-network NER)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .char_features import CharFeaturesConfig
from .encoders import ENCODER_TYPES
from .entity_dictionary import EntityDictionaryConfig, entity_types_of
from .retrieval import CLASSIFIER_METHODS, METHODS

TYPE_CLASSIFIER_KINDS = ("pooled", "tagger")


@strict
class MemoryNetConfig(PreTrainedConfig, CharFeaturesConfig, EntityDictionaryConfig):
    r"""
    Configuration of the associated-memory-network tagger: a character encoder, the memory
    attention over retrieved training sentences (`num_memory > 0`), optional multi-head
    self-attention, and a CRF. Its defaults are the model `train.py` trains (the architecture's defaults live
    here; `train.py` reads them).

    Args (and the BiLSTM's input-feature fields of `char_features.CharFeaturesConfig`, the taught entities of
    `entity_dictionary.EntityDictionaryConfig`):
        encoder_type (`str`, defaults to `"bilstm"`):
            `"bilstm"`: an offline character BiLSTM (the papers' non-pretrained baseline rows);
            `"transformers"`: any `AutoModel` described by `encoder_config` (BERT, RoBERTa-wwm, ...).
        encoder_config (`PreTrainedConfig` or `dict`, *optional*):
            Configuration of the transformers encoder; required when `encoder_type="transformers"`.
        vocab_size (`int`, defaults to 21128):
            Size of the character vocabulary of the BiLSTM encoder (the Chinese BERT vocabulary).
        char_embedding_size (`int`, defaults to 200):
            BiLSTM encoder: character embedding size (200 matches the Tencent character vectors).
        lstm_hidden_size (`int`, defaults to 256):
            BiLSTM encoder: hidden size per direction.
        lstm_num_layers (`int`, defaults to 1):
            BiLSTM encoder: number of layers.
        hidden_dropout_prob (`float`, defaults to 0.1):
            Dropout on embeddings and on the features fed to the emission layer (paper: 0.1).
        use_self_attention (`bool`, defaults to `True`):
            Re-encode the features with multi-head self-attention before the CRF (paper eqs. 8-10).
        self_attention_size (`int`, defaults to 512):
            Width of the self-attention layer (paper: 512).
        num_attention_heads (`int`, defaults to 8):
            Heads of the self-attention layer.
        tag_scheme (`str`, defaults to `"BIOS"`):
            Tag scheme of `id2label` (the paper tags in BIOS).
        max_length (`int`, defaults to 64):
            Longest input in tokens ([CLS] + characters + [SEP]) the model was trained for; the
            pipeline cuts longer text into windows of this size (paper: 64).
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser of linear layers.
        num_memory (`int`, defaults to 4):
            Memory sentences per input, `n` (paper: 4); 0 is the plain encoder-CRF baseline.
        memory_method (`str`, defaults to `"entity"`):
            How memories are retrieved when the caller gives none: one of `retrieval.METHODS` (described
            there).
        type_classifier_kind (`str`, defaults to `"pooled"`):
            The entity-type classifier of `category` retrieval. `"pooled"`: the encoder max-pooled
            over the characters, one logit per type (a multi-label classifier, as the paper's); `"tagger"`:
            an encoder-CRF tagger trained on the NER tags, whose decoded tags give the types.
        type_classifier_encoder_type (`str`, *optional*):
            Encoder of the entity-type classifier, `"bilstm"` or `"transformers"`; `None` (the
            default): the same kind as the tagger's, `encoder_type`. The classifier always has its own
            weights; this lets a BiLSTM tagger retrieve with a pretrained classifier (the paper's
            classifier is BERT-based, section 3.3) or the other way round. It reads the tagger's
            `input_ids`, so both must share one vocabulary.
        type_classifier_encoder_config (`PreTrainedConfig` or `dict`, *optional*):
            Configuration of the classifier's transformers encoder when it differs from the tagger's;
            `None` with a `"transformers"` classifier: `encoder_config`.
        label_type_size (`int`, defaults to 200):
            Size of the entity-type part of a label embedding (the pretrained vectors' size; the paper
            used 300-d word vectors); the position bits (B, I, O, S, ...) come on top.
        memory_gradient (`bool`, defaults to `False`):
            Back-propagate through the encoding of the memories (eq. 2) in training too. By default
            the memories are encoded without gradient: the encoder still learns from the input
            sentence and, through `s`, from the memory attention (eq. 3), and a training step costs
            about half as much. The paper does not say which it did; see `benchmarks/RESULTS.md`.
        memory_entity_swap_prob (`float`, defaults to 0.0):
            Training only: the probability that an input's gold entity which one of its memories labels with
            the same string and type is replaced, in both, by random entity characters
            (`modeling_memory_ner.swap_shared_entities`). It teaches the model to take a new entity's label
            from a memory, which is what sentences added to a trained model's bank (`add_memories`) need.
            0.5 scores as well as 0 on CLUENER dev and worse on a 204-sentence corpus (`benchmarks/RESULTS.md`).
        memory_cache_size (`int`, defaults to 4096):
            Inference only: the most bank sentences whose encoder features are kept between calls (the least
            recently used make room). A sentence costs `memory_bank_length x 2 x lstm_hidden_size` floats.
        memory_bank_size, memory_bank_length, memory_pos_length, token_table_size (`int`):
            Shapes of the memory-bank buffers saved with the model (set by `set_memory_bank`, `add_memories` and
            `remove_memories`).
    """

    model_type = "memory_ner"
    sub_configs_defaults = {
        "encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True),
        "type_classifier_encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True),
    }

    encoder_type: str = "bilstm"
    encoder_config: PreTrainedConfig | dict | None = None
    vocab_size: int = 21128
    pad_token_id: int | None = 0
    char_embedding_size: int = 200
    lstm_hidden_size: int = 256
    lstm_num_layers: int = 1
    hidden_dropout_prob: float = 0.1
    use_self_attention: bool = True
    self_attention_size: int = 512
    num_attention_heads: int = 8
    tag_scheme: str = "BIOS"
    max_length: int = 64
    initializer_range: float = 0.02
    num_memory: int = 4
    memory_method: str = "entity"
    type_classifier_kind: str = "pooled"
    type_classifier_encoder_type: str | None = None
    type_classifier_encoder_config: PreTrainedConfig | dict | None = None
    label_type_size: int = 200
    memory_gradient: bool = False
    memory_entity_swap_prob: float = 0.0
    memory_cache_size: int = 4096
    memory_bank_size: int = 0
    memory_bank_length: int = 0
    memory_pos_length: int = 0
    token_table_size: int = 0

    def __post_init__(self, **kwargs):
        if self.encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {self.encoder_type!r}")
        if self.encoder_type == "transformers" and self.encoder_config is None:
            raise ValueError(
                'encoder_type="transformers" needs an encoder_config (e.g. AutoConfig.from_pretrained(path))'
            )
        if self.use_self_attention and self.self_attention_size % self.num_attention_heads:
            raise ValueError(
                f"self_attention_size ({self.self_attention_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.memory_method not in METHODS:
            raise ValueError(f"unknown memory_method {self.memory_method!r}; choose one of {', '.join(METHODS)}")
        if self.type_classifier_kind not in TYPE_CLASSIFIER_KINDS:
            raise ValueError(
                f"type_classifier_kind must be one of {TYPE_CLASSIFIER_KINDS}, got {self.type_classifier_kind!r}"
            )
        if self.type_classifier_encoder_type not in (None, *ENCODER_TYPES):
            raise ValueError(
                f"type_classifier_encoder_type must be one of {ENCODER_TYPES} (or None: the tagger's), got "
                f"{self.type_classifier_encoder_type!r}"
            )
        if self.type_classifier_encoder[0] == "transformers" and self.type_classifier_encoder[1] is None:
            raise ValueError(
                'a "transformers" type classifier needs type_classifier_encoder_config (or the tagger\'s '
                "encoder_config)"
            )
        if not 0.0 <= self.memory_entity_swap_prob <= 1.0:
            raise ValueError(f"memory_entity_swap_prob must lie in [0, 1], got {self.memory_entity_swap_prob}")
        if self.num_memory < 0:
            raise ValueError(f"num_memory must be >= 0, got {self.num_memory}")
        super().__post_init__(**kwargs)

    @property
    def type_classifier_encoder(self) -> tuple[str, PreTrainedConfig | None]:
        """Encoder type and transformers config of the entity-type classifier (the tagger's unless set apart)."""
        encoder_type = self.type_classifier_encoder_type or self.encoder_type
        if encoder_type != "transformers":
            return encoder_type, None
        return encoder_type, self.type_classifier_encoder_config or self.encoder_config

    @property
    def uses_type_classifier(self) -> bool:
        """Whether retrieval reads the entity types a classifier predicts (`category`, `hybrid`)."""
        return self.num_memory > 0 and self.memory_method in CLASSIFIER_METHODS

    @property
    def entity_types(self) -> list[str]:
        """Entity types of `id2label`, sorted."""
        return entity_types_of(self.id2label)

    @property
    def position_prefixes(self) -> list[str]:
        """Tag prefixes of `id2label` (`O` included): the position bits of a label embedding."""
        return sorted({label.split("-", 1)[0] for label in self.id2label.values()})

    @property
    def label_embedding_size(self) -> int:
        """`l` of the paper: type vector + one bit per tag prefix (200 + 4 for BIOS here, 300 + 4 there)."""
        return self.label_type_size + len(self.position_prefixes)


__all__ = ["MemoryNetConfig"]
