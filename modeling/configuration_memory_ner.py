"""Configuration of :class:`MemoryNetForTokenClassification` (associated-memory-network NER)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

ENCODER_TYPES = ("bilstm", "transformers")


@strict
class MemoryNetConfig(PreTrainedConfig):
    r"""
    Configuration of the associated-memory-network tagger: a character encoder, (in the next
    stage) the memory attention over retrieved training sentences, optional multi-head
    self-attention, and a CRF.

    Args:
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
        use_self_attention (`bool`, defaults to `False`):
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
    """

    model_type = "memory_ner"
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True)}

    encoder_type: str = "bilstm"
    encoder_config: PreTrainedConfig | dict | None = None
    vocab_size: int = 21128
    pad_token_id: int | None = 0
    char_embedding_size: int = 200
    lstm_hidden_size: int = 256
    lstm_num_layers: int = 1
    hidden_dropout_prob: float = 0.1
    use_self_attention: bool = False
    self_attention_size: int = 512
    num_attention_heads: int = 8
    tag_scheme: str = "BIOS"
    max_length: int = 64
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {self.encoder_type!r}")
        if self.encoder_type == "transformers" and self.encoder_config is None:
            raise ValueError('encoder_type="transformers" needs an encoder_config (e.g. AutoConfig.from_pretrained(path))')
        if self.use_self_attention and self.self_attention_size % self.num_attention_heads:
            raise ValueError(
                f"self_attention_size ({self.self_attention_size}) must be divisible by num_attention_heads ({self.num_attention_heads})"
            )
        super().__post_init__(**kwargs)


__all__ = ["MemoryNetConfig"]
