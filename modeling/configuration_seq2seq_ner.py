"""Configuration of :class:`Seq2SeqAttnTagger` (BERT-Seq2Seq-Attention NER)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .char_features import CharFeaturesConfig
from .encoders import ENCODER_TYPES
from .entity_dictionary import EntityDictionaryConfig

ATTENTION_SCORES = ("dot", "general", "additive")


@strict
class Seq2SeqAttnConfig(PreTrainedConfig, CharFeaturesConfig, EntityDictionaryConfig):
    r"""
    Configuration of the sequence-to-sequence tagger of the seq2seq paper
    (`shared/papers/bert_seq2seq_attention_ner.txt`, section 2): character embeddings from the
    configured encoder, a BiLSTM encoder (eqs. 1-5), attention (eqs. 6-8) and an LSTM decoder that
    reads the previous tag and outputs a softmax over tags (eqs. 9-11).

    Args (and the BiLSTM's input-feature fields of `char_features.CharFeaturesConfig`, the taught entities of
    `entity_dictionary.EntityDictionaryConfig`):
        encoder_type (`str`, defaults to `"bilstm"`):
            Where the character embeddings come from. `"bilstm"`: a character embedding table
            (optionally initialised from pretrained character vectors; the paper's Word2vec row);
            `"transformers"`: any `AutoModel` described by `encoder_config` (the paper's BERT-base).
            Either way the BiLSTM encoder of eqs. 1-5 follows.
        encoder_config (`PreTrainedConfig` or `dict`, *optional*):
            Configuration of the transformers model; required when `encoder_type="transformers"`.
        vocab_size (`int`, defaults to 21128):
            Character vocabulary size of the embedding table (the Chinese BERT vocabulary).
        char_embedding_size (`int`, defaults to 200):
            Character embedding size (200 matches the Tencent character vectors).
        lstm_hidden_size (`int`, defaults to 128):
            BiLSTM encoder hidden size per direction (paper: 128).
        decoder_hidden_size (`int`, defaults to 128):
            LSTM decoder hidden size (`s_i` of eqs. 8-10); the paper gives 128 for its LSTMs. The
            `dot` score needs it equal to the encoder's output, `2 * lstm_hidden_size`.
        tag_embedding_size (`int`, defaults to 64):
            Size of the embedding of the previous tag `y_{i-1}` fed to the decoder.
        attention_score (`str`, defaults to `"general"`):
            `score(s_{i-1}, h_t)` of eq. 8: `"dot"` (`s·h`), `"general"` (`(W_q s)·(W_k h)`) or
            `"additive"` (`vᵀ tanh(W_q s + W_k h)`).
        attention_size (`int`, *optional*, defaults to 64):
            Width in which `general` and `additive` scores are computed and over which the context
            is summed (see `DecoderAttention`); `None` sums the full encoder states (`dot` always
            scores them in full).
        feed_encoder_state (`bool`, defaults to `True`):
            Also give the decoder step `i` the encoder state `h_i` of the character it tags. Eqs.
            9-10 feed only `y_{i-1}`, `s_{i-1}` and the attention context `c_i`; a tagger must emit
            exactly one tag per character, and without `h_i` the attention has to learn that
            alignment by itself. `False` is the paper's decoder as written.
        scheduled_sampling_prob (`float`, defaults to 0.0):
            Training only: the probability, drawn per sentence and decoder step, that step `i` is fed
            the decoder's own choice at step `i-1` (its best allowed tag, as greedy inference picks it)
            instead of the gold tag `y_{i-1}` (scheduled sampling, Bengio et al. 2015, at a constant
            rate). 0 is pure teacher forcing, the paper's training. A decoder trained only on gold
            histories has never seen its own mistakes, and at inference one wrong tag changes every
            later input.
        num_beams (`int`, defaults to 1):
            Beam width at inference; 1 is greedy decoding. `generate_tags(num_beams=...)` overrides it.
        constrained_decoding (`bool`, defaults to `True`):
            Decode only tag sequences the tag scheme allows (no `O I-PER`, no `B-PER E-LOC`).
        hidden_dropout_prob (`float`, defaults to 0.1):
            Dropout on the embeddings and on the decoder's output features.
        tag_scheme (`str`, defaults to `"BIEO"`):
            Tag scheme of `id2label` (paper: BIEO).
        max_length (`int`, defaults to 64):
            Longest input in tokens ([CLS] + characters + [SEP]) the model was trained for; the
            pipeline cuts longer text into windows of this size.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser of linear layers.
    """

    model_type = "seq2seq_attn_ner"
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True)}

    encoder_type: str = "bilstm"
    encoder_config: PreTrainedConfig | dict | None = None
    vocab_size: int = 21128
    pad_token_id: int | None = 0
    char_embedding_size: int = 200
    lstm_hidden_size: int = 128
    decoder_hidden_size: int = 128
    tag_embedding_size: int = 64
    attention_score: str = "general"
    attention_size: int | None = 64
    feed_encoder_state: bool = True
    scheduled_sampling_prob: float = 0.0
    num_beams: int = 1
    constrained_decoding: bool = True
    hidden_dropout_prob: float = 0.1
    tag_scheme: str = "BIEO"
    max_length: int = 64
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {self.encoder_type!r}")
        if self.encoder_type == "transformers" and self.encoder_config is None:
            raise ValueError(
                'encoder_type="transformers" needs an encoder_config (e.g. AutoConfig.from_pretrained(path))'
            )
        if self.attention_score not in ATTENTION_SCORES:
            raise ValueError(f"attention_score must be one of {ATTENTION_SCORES}, got {self.attention_score!r}")
        if self.attention_score == "dot" and self.decoder_hidden_size != 2 * self.lstm_hidden_size:
            raise ValueError(
                f"the dot score needs decoder_hidden_size == 2 * lstm_hidden_size ({2 * self.lstm_hidden_size}), got "
                f"{self.decoder_hidden_size}"
            )
        if self.attention_score in ("general", "additive") and not self.attention_size:
            raise ValueError(f"the {self.attention_score} score needs an attention_size")
        if not 0.0 <= self.scheduled_sampling_prob <= 1.0:
            raise ValueError(f"scheduled_sampling_prob must be in [0, 1], got {self.scheduled_sampling_prob}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        super().__post_init__(**kwargs)


__all__ = ["Seq2SeqAttnConfig"]
