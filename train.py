#!/usr/bin/env python
"""Train and evaluate a Chinese NER tagger with 🤗 Trainer (in the manner of transformers' run_ner.py).

    # the embedded sample corpus, char BiLSTM memory network, ~1 min on CPU
    python train.py
    # the paper's model, BiLSTM tier; with --num_memory 0 the BiLSTM(-self-attention)-CRF baseline
    python train.py --dataset cluener --char_vectors tencent
    # BiLSTM-attention-LSTM decoder, BIEO
    python train.py --model_type seq2seq --dataset peoples_daily --char_vectors tencent
    # the paper's setting (GPU)
    python train.py --dataset cluener --char_vectors tencent --encoder hfl/chinese-roberta-wwm-ext
    # the same arguments as a file (or args.yaml)
    python train.py args.json

Writes to ``--output_dir``: the model (``config.json`` with ``auto_map``, ``model.safetensors``, the
modeling code), the ``chinese-ner`` pipeline (``custom_pipelines`` + ``pipeline_ner.py``), the tokenizer,
``all_results.json``, and the per-type report of each evaluated split.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import transformers
import yaml
from datasets import DatasetDict
from transformers import (
    AutoConfig,
    DataCollatorForTokenClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

from data_scripts.collator import DataCollatorForMemoryNER
from data_scripts.encoder_features import (
    Lexicon,
    bigram_keys,
    jieba_dictionary,
    lexicon_in_ids,
    read_lexicon,
    word2vec_vectors,
)
from data_scripts.errors import UserError, run_command
from data_scripts.corpora import CORPORA, load_corpus
from data_scripts.features import default_data_dir, load_tokenizer, tokenize_and_align
from data_scripts.memory_data import entity_type_vectors, prepare_memories
from data_scripts.metrics import entity_metrics
from data_scripts.optim import build_optimizer
from data_scripts.readers import ReadOptions, print_summary
from modeling import MemoryNetConfig, MemoryNetForTokenClassification, Seq2SeqAttnConfig, Seq2SeqAttnTagger
from modeling.configuration_memory_ner import TYPE_CLASSIFIER_KINDS
from modeling.char_features import FIRST_WORD_ROW, CharFeatures
from modeling.configuration_seq2seq_ner import ATTENTION_SCORES
from modeling.encoders import init_char_embeddings, read_char_vectors
from modeling.retrieval import CLASSIFIER_METHODS, METHODS
from modeling.tag_schemes import SCHEMES, tags_to_spans

logger = logging.getLogger("train")

TENCENT_VECTORS = "vectors/tencent_char200_thucnews.npz"
Scheme = Literal[SCHEMES]
# the architecture's defaults are the config's (MemoryNetConfig: the model `python train.py` trains)
MEMORY_DEFAULTS = MemoryNetConfig


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "a tagger saved by this project (folder, or Hub id when online) to fine-tune on the corpus; its "
            "config sets "
            "the architecture, the tag scheme and the window, and its memory bank is filled again with the new "
            "training sentences"
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={
            "help": "with --model_name_or_path and a corpus of other labels: initialise the label-dependent layers "
            "anew (emissions, "
            "CRF, label embeddings, the entity-type classifier's head) instead of stopping"
        },
    )
    model_type: Literal["memory", "seq2seq"] = field(
        default="memory",
        metadata={
            "help": "memory: MemoryNetForTokenClassification (associated memory network, CRF); "
            "seq2seq: Seq2SeqAttnTagger (BiLSTM encoder, attention, LSTM decoder; BIEO, hidden 128)"
        },
    )
    encoder: str = field(
        default="bilstm",
        metadata={
            "help": "'bilstm' (offline char BiLSTM) or a transformers model id / local folder, e.g. "
            "hfl/chinese-roberta-wwm-ext"
        },
    )
    char_vectors: str | None = field(
        default=None,
        metadata={
            "help": "char vectors (.npz with key 'embeddings' + .vocab.txt; 'tencent' = the shared 200-d ones): "
            "initialise the BiLSTM's char embeddings and the memory's label type vectors"
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={
            "help": "vocab.txt or tokenizer folder; default: the encoder's, else the shared BERT vocab, else built "
            "from the corpus"
        },
    )
    char_embedding_size: int = field(
        default=MEMORY_DEFAULTS.char_embedding_size, metadata={"help": "BiLSTM: character embedding size"}
    )
    lstm_hidden_size: int = field(
        default=MEMORY_DEFAULTS.lstm_hidden_size,
        metadata={"help": "BiLSTM: hidden size per direction (the seq2seq model's own default: its preset)"},
    )
    lstm_num_layers: int = field(default=MEMORY_DEFAULTS.lstm_num_layers, metadata={"help": "BiLSTM: layers"})
    hidden_dropout_prob: float = field(
        default=MEMORY_DEFAULTS.hidden_dropout_prob,
        metadata={"help": "dropout (paper: 0.1; a new BiLSTM's preset sets it)"},
    )
    use_self_attention: bool = field(
        default=MEMORY_DEFAULTS.use_self_attention,
        metadata={"help": "memory: multi-head self-attention before the CRF (paper)"},
    )
    self_attention_size: int = field(
        default=MEMORY_DEFAULTS.self_attention_size,
        metadata={"help": "memory: the self-attention's size (paper: 512; divisible by its heads)"},
    )
    num_memory: int = field(
        default=MEMORY_DEFAULTS.num_memory,
        metadata={"help": "memory: memory sentences per input (paper: 4); 0: the plain encoder-CRF baseline"},
    )
    memory_method: Literal[METHODS] = field(
        default=MEMORY_DEFAULTS.memory_method,
        metadata={
            "help": "memory retrieval: entity (bank sentences labelling the input's own strings), lexical, category "
            "(paper), "
            "hybrid (entity + category), pos_edit, gold_category (oracle) or random"
        },
    )
    memory_gradient: bool = field(
        default=MEMORY_DEFAULTS.memory_gradient,
        metadata={"help": "back-propagate through the memories' encodings too (about 2x slower training steps)"},
    )
    memory_entity_swap_prob: float = field(
        default=MEMORY_DEFAULTS.memory_entity_swap_prob,
        metadata={
            "help": "memory, training: probability of replacing an entity the input shares with a memory (same "
            "string and type) by random characters in both, so the model learns to read new entities from its "
            "memories, which sentences added after training with add_memories need (measured: 0.5)"
        },
    )
    type_classifier_kind: Literal[TYPE_CLASSIFIER_KINDS] = field(
        default=MEMORY_DEFAULTS.type_classifier_kind,
        metadata={
            "help": "category retrieval: the entity-type classifier, pooled (a multi-label classifier, the paper's) "
            "or tagger "
            "(an encoder-CRF tagger whose decoded entities give the types)"
        },
    )
    type_classifier_encoder: str | None = field(
        default=None,
        metadata={
            "help": "category retrieval: the entity-type classifier's encoder, 'bilstm' or a transformers model id / "
            "local folder "
            "(the paper's classifier is BERT-based); default: the tagger's --encoder. It reads the tagger's input "
            "ids: "
            "both need one vocabulary (the Chinese BERT one by default)"
        },
    )
    type_classifier_epochs: float = field(
        default=5.0, metadata={"help": "category retrieval: epochs of the entity-type classifier"}
    )
    type_classifier_folds: int = field(
        default=2,
        metadata={
            "help": "category retrieval: predict the training sentences' types out of fold, with classifiers trained "
            "on the other folds, "
            "so training memories are as noisy as test-time ones; 1: in-sample predictions of the final classifier"
        },
    )
    oracle_type_share: float = field(
        default=0.0,
        metadata={
            "help": "category retrieval, analysis only: replace the predicted entity types of this share of the "
            "sentences "
            "(every split, drawn with --seed) by the gold ones before retrieval; between category (0) and "
            "gold_category (1). "
            "The saved model tags raw text with its classifier's types alone"
        },
    )
    attention_score: Literal[ATTENTION_SCORES] = field(
        default=Seq2SeqAttnConfig.attention_score,
        metadata={"help": "seq2seq: attention score, dot, general or additive"},
    )
    feed_encoder_state: bool = field(
        default=Seq2SeqAttnConfig.feed_encoder_state,
        metadata={
            "help": "seq2seq: also feed decoder step i the encoder state of character i (false: the paper's eqs. 9-10 "
            "as written)"
        },
    )
    scheduled_sampling_prob: float = field(
        default=Seq2SeqAttnConfig.scheduled_sampling_prob,
        metadata={
            "help": "seq2seq: in training, feed the decoder its own previous choice instead of the gold tag with this "
            "probability (0: pure teacher forcing, the paper's)"
        },
    )
    num_beams: int = field(
        default=Seq2SeqAttnConfig.num_beams,
        metadata={"help": "seq2seq: beam width of decoding, 1 = greedy (saved in the config)"},
    )
    use_bigrams: bool = field(
        default=False,
        metadata={
            "help": "BiLSTM: embed each character's bigram with its right neighbour (vocabulary: train; a new "
            "BiLSTM's preset sets it)"
        },
    )
    bigram_min_count: int = field(
        default=2, metadata={"help": "BiLSTM, --use_bigrams: the training bigrams seen this often get a vector"}
    )
    use_softword: bool = field(
        default=MEMORY_DEFAULTS.use_softword,
        metadata={
            "help": "BiLSTM: embed each character's position (B/M/E/S) in its word under --lexicon (a new "
            "BiLSTM's preset sets it)"
        },
    )
    use_word_sets: bool = field(
        default=MEMORY_DEFAULTS.use_word_sets,
        metadata={
            "help": "BiLSTM: the SoftLexicon word sets (B/M/E/S) of each character in --lexicon (a new BiLSTM's "
            "preset sets it)"
        },
    )
    lexicon: str = field(
        default="jieba",
        metadata={
            "help": "the lexicon of --use_softword / --use_word_sets: 'jieba' (the dictionary installed with "
            "jieba) or a file of 'word [frequency [POS]]' lines; saved into the model"
        },
    )
    feature_projection_size: int = field(
        default=MEMORY_DEFAULTS.feature_projection_size,
        metadata={
            "help": "BiLSTM with input features: project them to this width before the BiLSTM (0: as they are); "
            "a narrower BiLSTM input tags faster"
        },
    )
    feature_vectors: Literal["random", "chars", "word2vec"] = field(
        default="random",
        metadata={
            "help": "BiLSTM: the bigram and word embeddings start random, from the mean of their characters' vectors "
            "(projected to their width; with --char_vectors), or as skip-gram vectors of the training split "
            "(gensim's word2vec)"
        },
    )
    encoder_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "learning rate of the encoder; --learning_rate is that of the other layers. Default: 3e-5 for a "
            "pretrained encoder (paper), --learning_rate for the BiLSTM"
        },
    )

    def char_vectors_path(self) -> Path:
        """``--char_vectors``, with ``tencent`` standing for the shared 200-d vectors."""
        return default_data_dir() / TENCENT_VECTORS if self.char_vectors == "tencent" else Path(self.char_vectors)


@dataclass
class DataArguments:
    dataset: str = field(
        default="sample",
        metadata={"help": f"one of {', '.join(CORPORA)}, a CLUENER-layout folder, or 'files' (with --train_file ...)"},
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "where named corpora live (default $NER_DATA_DIR or ../shared/data)"}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "CLUENER .json or column file (char<TAB|SPACE>tag)"}
    )
    validation_file: str | None = field(default=None, metadata={"help": "as --train_file"})
    test_file: str | None = field(default=None, metadata={"help": "as --train_file"})
    source_tag_scheme: Scheme | None = field(
        default=None, metadata={"help": "tag scheme of column files (BIO, BIOS, BIOES, BIEO, BMES); default: detected"}
    )
    tag_scheme: Scheme = field(
        default=MEMORY_DEFAULTS.tag_scheme,
        metadata={
            "help": "scheme the model is trained in (memory paper: BIOS; seq2seq paper: BIEO, the seq2seq preset)"
        },
    )
    max_seq_length: int = field(
        default=MEMORY_DEFAULTS.max_length,
        metadata={"help": "tokens per input incl. [CLS]/[SEP]; longer sentences are split at punctuation (paper: 64)"},
    )
    validation_ratio: float = field(
        default=0.05, metadata={"help": "share of train held out for model selection when the corpus has no dev split"}
    )
    split_seed: int = field(
        default=42,
        metadata={
            "help": "seed of the People's Daily 80/20 split and of the held-out share of train; apart from --seed, so "
            "that "
            "runs with different --seed are scored on the same test set"
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "a datasets dataset with token and tag columns: a save_to_disk folder, or a Hub id (online)"
        },
    )
    text_column_name: str | None = field(
        default=None, metadata={"help": "token column of JSON files and datasets (default: tokens)"}
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "tag column of JSON files and datasets (default: ner_tags)"}
    )
    tag_names: list[str] | None = field(
        default=None,
        metadata={"help": "the tag of each id, in order, when the tag column holds integers without ClassLabel names"},
    )
    bad_tags: Literal["error", "repair", "skip"] = field(
        default="error",
        metadata={
            "help": "a sentence with ill-formed tags (an entity left open at a sentence break, O I-PER): stop with "
            "file:line (error), read it leniently as seqeval does (repair), or leave it out (skip); "
            "repaired and skipped sentences are listed in all_results.json"
        },
    )
    token_column: int | None = field(
        default=None, metadata={"help": "column of the characters in column files (0-based; default: the first)"}
    )
    tag_column: int | None = field(
        default=None, metadata={"help": "column of the tags in column files (0-based, -1 the last; default: the last)"}
    )
    token_first_char: bool = field(
        default=False,
        metadata={"help": "read a token of several characters as its first (a character with a suffix, e.g. 科0)"},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "truncate train (debugging, tests)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "truncate validation/test"})

    def __post_init__(self):
        # run_ner.py's convention: --train_file or --dataset_name alone chooses the data
        if self.dataset == "sample" and (self.train_file or self.dataset_name):
            self.dataset = self.dataset_name or "files"

    def read_corpus(self):
        """The corpus these arguments name, as a ``data_scripts.readers.Corpus`` (long sentences cut to the window)."""
        return load_corpus(
            self.dataset, self.data_dir, self.tag_scheme, self.max_seq_length - 2, self.source_tag_scheme,
            self.validation_ratio, self.split_seed, self.train_file, self.validation_file, self.test_file,
            self.read_options(), self.dataset_name,
        )  # fmt: skip

    def read_options(self) -> ReadOptions:
        return ReadOptions(
            bad_tags=self.bad_tags,
            token_column=self.token_column,
            tag_column=self.tag_column,
            token_first_char=self.token_first_char,
            tag_names=self.tag_names,
            text_column_name=self.text_column_name,
            label_column_name=self.label_column_name,
        )


@dataclass
class NERTrainingArguments(TrainingArguments):
    """TrainingArguments with this project's defaults (paper: 20 epochs, batch 16)."""

    output_dir: str | None = field(
        default=None, metadata={"help": "default: outputs/<dataset>-<memory|crf|seq2seq>[-<encoder>]"}
    )
    num_train_epochs: float = field(default=20.0, metadata={"help": "paper: 20"})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "paper: 16"})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "eval batch size"})
    learning_rate: float = field(
        default=1e-3,
        metadata={"help": "learning rate of the non-encoder layers (paper: 2e-4 with a pretrained encoder)"},
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "evaluate every epoch"})
    save_strategy: str = field(default="epoch", metadata={"help": "checkpoint every epoch"})
    logging_strategy: str = field(default="epoch", metadata={"help": "log every epoch"})
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept (the best is never deleted)"})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "keep the checkpoint with the best dev F1"})
    metric_for_best_model: str | None = field(default="f1", metadata={"help": "entity-level micro F1"})
    dataloader_pin_memory: bool = field(
        default=torch.cuda.is_available(), metadata={"help": "pin memory (only with a GPU)"}
    )
    use_cpu: bool = field(
        default=not torch.cuda.is_available(),
        metadata={"help": "train on CPU; the default without a GPU, which also makes torchrun use CPU DDP (gloo)"},
    )


# Defaults that differ for a model, a corpus or an encoder, applied only to arguments not passed. A new char BiLSTM
# learns from scratch with its input features, more dropout and a higher rate than the paper's plain characters:
# they score higher on every corpus measured (benchmarks/RESULTS.md, the character encoder; a rate of 5e-3 makes
# the self-attention layer diverge). A pretrained encoder gets the paper's rates: 3e-5 for it (see
# encoder_learning_rate), 2e-4 for the other layers. The 204-sentence sample needs 30 epochs for the BiLSTM to learn
# much.
DATASET_PRESETS = {"sample": {"num_train_epochs": 30.0}}
PRETRAINED_ENCODER_PRESET = {"learning_rate": 2e-4}
BILSTM_ENCODER_PRESET = {
    "use_bigrams": True,
    "use_softword": True,
    "use_word_sets": True,
    "hidden_dropout_prob": 0.5,
    "learning_rate": 2e-3,
}
# the seq2seq model's own defaults where they differ from the memory network's
MODEL_PRESETS = {
    "seq2seq": {"tag_scheme": Seq2SeqAttnConfig.tag_scheme, "lstm_hidden_size": Seq2SeqAttnConfig.lstm_hidden_size}
}


# the Trainer settings all_results.json records next to the model and data arguments
TRAINING_SETTINGS = (
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "seed",
    "metric_for_best_model",
    "train_sampling_strategy",
)


def parse_args(
    argv: list[str] | None = None, presets_applied: list[str] | None = None
) -> tuple[ModelArguments, DataArguments, NERTrainingArguments]:
    """The three argument dataclasses, from the command line or from one ``.json`` / ``.yaml`` file.

    Parsed twice: first what the user gave alone, which decides the presets (a saved model's fixed
    arguments, then ``MODEL_PRESETS``, ``PRETRAINED_ENCODER_PRESET`` or ``BILSTM_ENCODER_PRESET``,
    ``DATASET_PRESETS``); then the presets under what the user gave, so that a flag the user passed always wins.
    Each preset applied is logged, or added to ``presets_applied`` for the caller to log."""
    parser = HfArgumentParser((ModelArguments, DataArguments, NERTrainingArguments))
    given = given_arguments(parser, sys.argv[1:] if argv is None else list(argv))
    model_args, data_args, _ = parse_dict(parser, given)
    saved = None
    if model_args.model_name_or_path:
        saved = from_folder(AutoConfig.from_pretrained, model_args.model_name_or_path, "--model_name_or_path")
    if saved is not None:  # the architecture, scheme and window are the saved model's
        for name, value in saved_model_arguments(saved).items():
            if name in given and given[name] != value:
                parser.error(
                    f"--{name} {given[name]} differs from the saved model's {value} "
                    f"({model_args.model_name_or_path}); "
                    f"it comes from the saved model: leave it out"
                )
            given[name] = value
        model_args, data_args, _ = parse_dict(parser, given)
    elif model_args.ignore_mismatched_sizes:
        parser.error("--ignore_mismatched_sizes applies to fine-tuning a saved model: it needs --model_name_or_path")
    pretrained = model_args.encoder != "bilstm" or (saved is not None and saved.encoder_type == "transformers")
    presets = [
        (f"{model_args.model_type} model", MODEL_PRESETS.get(model_args.model_type, {})),
        ("pretrained encoder", PRETRAINED_ENCODER_PRESET if pretrained else {}),
        ("BiLSTM encoder", {} if pretrained else BILSTM_ENCODER_PRESET),
        (f"{data_args.dataset} corpus", DATASET_PRESETS.get(data_args.dataset, {})),
    ]
    defaults = {"output_dir": default_output_dir(model_args, data_args)}  # not TrainingArguments' "trainer_output"
    for what, preset in presets:
        for name, value in preset.items():
            if name not in given and name not in defaults:  # the first preset naming an argument wins over later ones
                defaults[name] = value
                note = f"{what}: --{name} {value} (preset; pass the flag to change it)"
                if presets_applied is None:
                    logger.info(note)
                else:
                    presets_applied.append(note)
    model_args, data_args, training_args = parse_dict(parser, {**defaults, **given})

    category = (
        model_args.model_type == "memory"
        and model_args.memory_method in CLASSIFIER_METHODS
        and model_args.num_memory > 0
    )
    if model_args.feature_vectors == "chars" and not model_args.char_vectors:
        parser.error(
            "--feature_vectors chars starts the bigram and word embeddings from the char vectors: it needs "
            "--char_vectors"
        )
    if model_args.oracle_type_share and not category:
        parser.error(
            "--oracle_type_share blends gold into the predicted entity types of category retrieval: it needs "
            "--memory_method category"
        )
    if model_args.type_classifier_encoder and not category:
        parser.error(
            "--type_classifier_encoder is the encoder of category retrieval's entity-type classifier: it needs "
            "--memory_method category"
        )
    if not 0.0 <= model_args.oracle_type_share <= 1.0:
        parser.error(
            f"--oracle_type_share is a share of the sentences, within [0, 1]; got {model_args.oracle_type_share}"
        )
    return model_args, data_args, training_args


def from_folder(load, name_or_path: str, flag: str):
    """``load(name_or_path)``; a folder that is not there or holds no such model is the user's error, named by
    ``flag``."""
    try:
        return load(name_or_path)
    except (OSError, ValueError) as error:  # transformers: no such folder / Hub id, or an unknown model type
        raise UserError(f"{flag} {name_or_path}: {str(error).splitlines()[0]}") from None


def default_output_dir(model_args: ModelArguments, data_args: DataArguments) -> str:
    """``outputs/<corpus>-<model>[-<pretrained encoder>]``, the model being ``memory`` (the memory network), ``crf``
    (the same class without memory) or ``seq2seq``."""
    model = model_args.model_type if model_args.model_type == "seq2seq" or model_args.num_memory else "crf"
    encoder = "" if model_args.encoder == "bilstm" else f"-{Path(model_args.encoder).name}"
    return f"outputs/{Path(data_args.dataset).name}-{model}{encoder}"


def given_arguments(parser: HfArgumentParser, argv: list[str]) -> dict:
    """The arguments the user gave, by name: the keys of one ``.json`` / ``.yaml`` file, or the flags
    on the command line (argparse's own parsing, so abbreviated flags count too)."""
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        text = Path(argv[0]).read_text(encoding="utf-8")
        given = json.loads(text) if argv[0].endswith(".json") else yaml.safe_load(text) or {}
        if not isinstance(given, dict):
            parser.error(f"{argv[0]}: expected a mapping of argument names to values, got {type(given).__name__}")
        return given
    unset = object()  # argparse fills in a default only where the namespace has no value yet
    namespace = argparse.Namespace(**{action.dest: unset for action in parser._actions if action.dest != "help"})
    namespace, rest = parser.parse_known_args(argv, namespace=namespace)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return {name: value for name, value in vars(namespace).items() if value is not unset}


def parse_dict(parser: HfArgumentParser, values: dict) -> tuple:
    """``HfArgumentParser.parse_dict``, with its errors and the ``Literal`` choices (which it leaves to
    argparse, so a file's values would go unchecked) reported as argparse reports them."""
    unknown = sorted(set(values) - {f.name for dtype in parser.dataclass_types for f in dataclasses.fields(dtype)})
    if unknown:
        parser.error(f"unrecognized arguments: {', '.join(unknown)}")
    for dtype in parser.dataclass_types:
        for name, hint in typing.get_type_hints(dtype).items():
            choices = literal_choices(hint)
            if choices and values.get(name) is not None and values[name] not in choices:
                parser.error(f"argument --{name}: invalid choice: {values[name]!r} (choose from {', '.join(choices)})")
    return parser.parse_dict(values)


def literal_choices(hint) -> tuple | None:
    """The values of a ``Literal[...]`` or ``Literal[...] | None`` type, else None."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    inner = [a for a in typing.get_args(hint) if a is not type(None)]
    return literal_choices(inner[0]) if len(inner) == 1 else None


def saved_model_arguments(config) -> dict:
    """The arguments a saved model fixes, as ``train.py`` flags: fine-tuning takes them from its config."""
    model_type = {MemoryNetConfig.model_type: "memory", Seq2SeqAttnConfig.model_type: "seq2seq"}.get(config.model_type)
    if model_type is None:
        raise UserError(
            f"--model_name_or_path: a {config.model_type!r} model is not a tagger of this project "
            f"({MemoryNetConfig.model_type} or {Seq2SeqAttnConfig.model_type})"
        )
    out = {
        "model_type": model_type,
        "tag_scheme": config.tag_scheme,
        "max_seq_length": config.max_length,
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "use_bigrams": bool(config.bigram_vocab_size),
        "use_softword": config.use_softword,
        "use_word_sets": config.use_word_sets,
        "feature_projection_size": config.feature_projection_size,
    }
    if model_type == "memory":
        out.update(
            num_memory=config.num_memory,
            memory_method=config.memory_method,
            use_self_attention=config.use_self_attention,
            type_classifier_kind=config.type_classifier_kind,
        )
    return out


def load_saved_model(path: str, label_names: list[str], ignore_mismatched_sizes: bool):
    """A saved tagger to fine-tune, and whether its label-dependent layers were initialised anew (another label
    set)."""
    config = AutoConfig.from_pretrained(path)
    model_class = MemoryNetForTokenClassification if isinstance(config, MemoryNetConfig) else Seq2SeqAttnTagger
    model = model_class.from_pretrained(path)
    saved = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if saved == label_names:
        return model, False
    if not ignore_mismatched_sizes:
        raise UserError(
            f"--model_name_or_path {path} tags {len(saved)} labels ({', '.join(saved)}), the corpus "
            "has "
            f"{len(label_names)} ({', '.join(label_names)}). Pass --ignore_mismatched_sizes to initialise the "
            "label-dependent "
            "layers anew and keep the rest, or fine-tune on a corpus with the model's labels."
        )
    model.reset_labels(dict(enumerate(label_names)))
    logger.warning(
        "--model_name_or_path %s: new label set (%d -> %d labels); emissions, CRF, label embeddings and the type "
        "classifier's head start anew, the encoders keep their weights",
        path,
        len(saved),
        len(label_names),
    )
    return model, True


def type_classifier_encoder_kwargs(encoder: str | None, tokenizer) -> dict:
    """Config of an entity-type classifier whose encoder differs from the tagger's (``--type_classifier_encoder``)."""
    if not encoder:
        return {}
    if encoder == "bilstm":
        return {"type_classifier_encoder_type": "bilstm"}
    config = AutoConfig.from_pretrained(encoder)
    if getattr(config, "vocab_size", len(tokenizer)) < len(tokenizer):
        raise UserError(
            f"--type_classifier_encoder {encoder}: its {config.vocab_size} token embeddings do not cover the "
            "tokenizer's "
            f"{len(tokenizer)} tokens; the classifier reads the tagger's input ids, so both need one vocabulary"
        )
    return {"type_classifier_encoder_type": "transformers", "type_classifier_encoder_config": config.to_dict()}


def architecture(model_args: ModelArguments, data_args: DataArguments) -> dict:
    """The config arguments the flags choose (the corpus, the tokenizer and the char vectors add the rest)."""
    kwargs = {
        "hidden_dropout_prob": model_args.hidden_dropout_prob,
        "tag_scheme": data_args.tag_scheme,
        "max_length": data_args.max_seq_length,
        "char_embedding_size": model_args.char_embedding_size,
        "lstm_hidden_size": model_args.lstm_hidden_size,
        "use_softword": model_args.use_softword,
        "use_word_sets": model_args.use_word_sets,
        "feature_projection_size": model_args.feature_projection_size,
    }
    if model_args.model_type == "memory":
        kwargs.update(
            lstm_num_layers=model_args.lstm_num_layers,
            use_self_attention=model_args.use_self_attention,
            self_attention_size=model_args.self_attention_size,
            num_memory=model_args.num_memory,
            memory_method=model_args.memory_method,
            memory_gradient=model_args.memory_gradient,
            memory_entity_swap_prob=model_args.memory_entity_swap_prob,
            type_classifier_kind=model_args.type_classifier_kind,
        )
    else:
        kwargs.update(
            attention_score=model_args.attention_score,
            feed_encoder_state=model_args.feed_encoder_state,
            num_beams=model_args.num_beams,
            scheduled_sampling_prob=model_args.scheduled_sampling_prob,
        )
        if model_args.attention_score == "dot":  # s_{i-1} . h_t: the decoder state as wide as the encoder's
            kwargs["decoder_hidden_size"] = 2 * model_args.lstm_hidden_size
    return kwargs


@dataclass
class EncoderInputs:
    """The vocabularies of the BiLSTM's input features, built from the training split."""

    bigram_keys: list[int] | None = None
    lexicon: Lexicon | None = None

    def config(self) -> dict:
        out = {"bigram_vocab_size": len(self.bigram_keys) if self.bigram_keys is not None else 0}
        if self.lexicon is not None:
            out.update(
                lexicon_size=len(self.lexicon.word_ids),
                lexicon_word_length=self.lexicon.word_length,
                word_vocab_size=self.lexicon.num_rows,
            )
        return out

    def fill(self, model) -> None:
        """Give every BiLSTM of ``model`` (the tagger's, a BiLSTM type classifier's) these vocabularies."""
        for module in model.modules():
            if isinstance(module, CharFeatures):
                if self.bigram_keys is not None:
                    module.set_bigrams(self.bigram_keys)
                if self.lexicon is not None:
                    module.set_lexicon(self.lexicon.word_ids, self.lexicon.freqs, self.lexicon.rows)


def encoder_inputs(model_args: ModelArguments, tokenizer, train_input_ids) -> EncoderInputs:
    """The bigram vocabulary and the lexicon the flags ask for (none with a pretrained encoder, which ignores
    them)."""
    inputs = EncoderInputs()
    if model_args.encoder != "bilstm":
        if model_args.use_bigrams or model_args.use_softword or model_args.use_word_sets:
            logger.warning(
                "--use_bigrams / --use_softword / --use_word_sets: a pretrained encoder reads no such input"
            )
        return inputs
    if model_args.use_bigrams:
        inputs.bigram_keys = bigram_keys(train_input_ids, len(tokenizer), model_args.bigram_min_count)
        logger.info(
            "bigrams: %d seen at least %d times in train", len(inputs.bigram_keys), model_args.bigram_min_count
        )
    if model_args.use_softword or model_args.use_word_sets:
        path = jieba_dictionary() if model_args.lexicon == "jieba" else Path(model_args.lexicon)
        inputs.lexicon = lexicon_in_ids(read_lexicon(path), tokenizer, train_input_ids)
        logger.info(
            "lexicon %s: %d words in the model (%d left out or merged), %d of them in train",
            path, len(inputs.lexicon.word_ids), inputs.lexicon.dropped, inputs.lexicon.num_rows - FIRST_WORD_ROW,
        )  # fmt: skip
    return inputs


def build_model(
    model_args: ModelArguments,
    data_args: DataArguments,
    tokenizer,
    label_names: list[str],
    char_vectors=None,
    inputs: EncoderInputs | None = None,
):
    """A new ``MemoryNetForTokenClassification`` or ``Seq2SeqAttnTagger`` on a pretrained encoder or char
    embeddings."""
    kwargs = {
        **architecture(model_args, data_args),
        "id2label": dict(enumerate(label_names)),
        "label2id": {label: i for i, label in enumerate(label_names)},
        "pad_token_id": tokenizer.pad_token_id,
        "vocab_size": len(tokenizer),
        **(inputs.config() if inputs else {}),
    }
    if model_args.model_type == "memory":
        model_class, config_class = MemoryNetForTokenClassification, MemoryNetConfig
        kwargs.update(type_classifier_encoder_kwargs(model_args.type_classifier_encoder, tokenizer))
        if char_vectors:
            kwargs["label_type_size"] = char_vectors[1].shape[1]
    else:
        model_class, config_class = Seq2SeqAttnTagger, Seq2SeqAttnConfig
    if model_args.encoder != "bilstm":
        return from_folder(
            lambda path: model_class.from_encoder_pretrained(path, **kwargs), model_args.encoder, "--encoder"
        )
    config = config_class(encoder_type="bilstm", **kwargs)
    model = model_class(config)
    if inputs:
        inputs.fill(model)
    if char_vectors:
        stats = init_char_embeddings(model.get_input_embeddings(), tokenizer.get_vocab(), *char_vectors)
        logger.info("char vectors: %d of %d vocabulary entries initialised", stats["initialised"], stats["vocab"])
    return model


def init_feature_vectors(model, feature_vectors: str, train_input_ids, seed: int) -> None:
    """``--feature_vectors``: the bigram and word embeddings of a new BiLSTM's input features from the char
    vectors or from word2vec on the training split (``random`` keeps those of ``reset_parameters``)."""
    features = getattr(model.encoder, "features", None)
    if features is None or feature_vectors == "random":
        return
    if feature_vectors == "chars":
        counts = features.init_from_char_embeddings(model.get_input_embeddings().weight)
    else:
        vectors = word2vec_vectors(features, train_input_ids, seed)
        counts = {name: features.set_embedding_rows(name, *rows_vectors) for name, rows_vectors in vectors.items()}
    logger.info("feature embeddings (%s): %s rows", feature_vectors, counts)


def main() -> dict:
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    presets: list[str] = []
    model_args, data_args, training_args = parse_args(presets_applied=presets)
    logging.getLogger().setLevel(logging.INFO if training_args.should_log else logging.WARN)
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)

    # 1. corpus: splits of {id, tokens, ner_tags}
    with training_args.main_process_first(desc="reading the corpus"):
        corpus = data_args.read_corpus()
    for note in presets:  # after the corpus is read, so that an error in its files is the only line
        logger.info(note)
    if training_args.should_log:
        print_summary(corpus, data_args.dataset)
    corpus = corpus.truncated(data_args.max_train_samples, data_args.max_eval_samples)

    # 2. tokenizer: one token per character; a saved model's, or a pretrained encoder's (the tagger's, else the type
    # classifier's)
    pretrained = [e for e in (model_args.encoder, model_args.type_classifier_encoder) if e and e != "bilstm"]
    tokenizer, tokenizer_source = load_tokenizer(
        model_args.tokenizer_name or model_args.model_name_or_path or next(iter(pretrained), None),
        corpus["train"]["tokens"],
        training_args.output_dir,
        model_max_length=data_args.max_seq_length,  # saved with the model: its window in tokens
    )
    logger.info("tokenizer: %s", tokenizer_source)

    # 3. features
    with training_args.main_process_first(desc="tokenizing"):
        features = tokenize_corpus(corpus, tokenizer, data_args.max_seq_length)

    # 4. model (the bigram vocabulary and the lexicon of the encoder's input features from the training split)
    char_vectors = read_char_vectors(model_args.char_vectors_path()) if model_args.char_vectors else None
    model = load_or_build_model(
        model_args, data_args, tokenizer, corpus, char_vectors, features["train"], training_args.seed
    )
    encoder_lr = model_args.encoder_learning_rate or (
        3e-5 if model.config.encoder_type == "transformers" else training_args.learning_rate
    )
    logger.info("model: %s encoder, %.2fM parameters, lr encoder %g / other layers %g", model.config.encoder_type,
                model.num_parameters() / 1e6, encoder_lr, training_args.learning_rate)  # fmt: skip

    # 5. memories: the training split becomes the model's memory bank, and every example gets its n memories
    plan = None
    if isinstance(model, MemoryNetForTokenClassification) and model.config.num_memory > 0:
        plan = prepare_memories(model, corpus, features, tokenizer, model_args, training_args, char_vectors)
        model.apply_memory_plan(plan)
        features = plan.with_memory_ids(features)
        check_memories_agree_across_processes(model, features)

    # 6. Trainer
    metrics = EntityMetrics(corpus.label_names, corpus.tag_scheme)
    collator = DataCollatorForTokenClassification(tokenizer)
    if plan:  # the memories' tokens and tags, gathered from the bank by memory_ids
        collator = DataCollatorForMemoryNER(tokenizer, bank=model.memory_bank)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=features["train"],
        eval_dataset=features["validation"],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=metrics.compute_metrics,
        preprocess_logits_for_metrics=lambda outputs, labels: outputs[1],  # (emissions, viterbi tags) -> tags
        optimizers=(build_optimizer(model, training_args, encoder_lr), None),
    )

    # 7. train and save
    resume = training_args.resume_from_checkpoint
    train_result = trainer.train(
        resume_from_checkpoint=True if isinstance(resume, str) and resume.lower() in ("true", "last") else resume
    )
    trainer.save_model()  # the model's save_pretrained writes the chinese-ner pipeline with it

    # 8. evaluate; tag an unlabelled test split
    results = dict(train_result.metrics)  # train_runtime, train_loss, ...
    results.update(evaluate(trainer, features, metrics, data_args.dataset, Path(training_args.output_dir)))
    if "test" in features and "labels" not in features["test"].column_names:
        path = Path(training_args.output_dir, "test_predictions.json")
        write_predictions(trainer, features["test"], corpus["test"], corpus.label_names, corpus.tag_scheme, path)
    if trainer.is_world_process_zero():
        results.update(run_record(trainer, corpus, model_args, data_args, training_args))
        results.update(plan.report if plan else {})
        Path(training_args.output_dir, "all_results.json").write_text(
            json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        trainer.save_state()
        print(f"model and results saved to {training_args.output_dir}")
    return results


def load_or_build_model(
    model_args: ModelArguments, data_args: DataArguments, tokenizer, corpus, char_vectors, train_features, seed: int
):
    """The saved model to fine-tune (``--model_name_or_path``) or a new one; new labels get the paper's
    label embeddings."""
    if model_args.model_name_or_path:
        model, new_labels = load_saved_model(
            model_args.model_name_or_path, corpus.label_names, model_args.ignore_mismatched_sizes
        )
    else:
        inputs = encoder_inputs(model_args, tokenizer, train_features["input_ids"])
        model = build_model(model_args, data_args, tokenizer, corpus.label_names, char_vectors, inputs)
        init_feature_vectors(model, model_args.feature_vectors, train_features["input_ids"], seed)
        new_labels = True
    if new_labels and getattr(model, "label_embeddings", None) is not None:  # a saved model's own labels keep theirs
        init_label_embeddings(model, corpus, char_vectors)
    return model


def tokenize_corpus(corpus, tokenizer, max_length: int) -> DatasetDict:
    """Every split as ``input_ids`` / ``attention_mask`` (/ ``labels``), one token per character."""
    return DatasetDict({  # split by split: an unlabelled split (CLUENER's test) has no ner_tags
        split: ds.map(tokenize_and_align, batched=True, remove_columns=ds.column_names, desc=f"tokenizing {split}",
                      fn_kwargs={"tokenizer": tokenizer, "max_length": max_length})
        for split, ds in corpus.items()
    })  # fmt: skip


def init_label_embeddings(model: MemoryNetForTokenClassification, corpus, char_vectors) -> None:
    """The paper's label embeddings: per entity type the mean char vector of its training entities (random without
    vectors)."""
    if char_vectors:
        type_vectors = entity_type_vectors(corpus, corpus.tag_scheme, *char_vectors)
        model.reset_label_embeddings({t: torch.as_tensor(v) for t, v in type_vectors.items()})
        logger.info("label embeddings: type vectors from the char vectors of %d entity types", len(type_vectors))
    else:
        logger.warning(
            "label embeddings: random type vectors (pass --char_vectors tencent for the paper's mean-of-entity "
            "vectors)"
        )


@dataclass
class EntityMetrics:
    """Strict entity-level scores of Viterbi tags against gold labels (both aligned with input_ids, -100 off
    characters)."""

    label_names: list[str]
    scheme: str

    def scores(self, tags: np.ndarray, labels: np.ndarray) -> dict:
        names = self.label_names
        gold = [[names[lab] for lab in row if lab != -100] for row in labels]
        pred = [[names[t] for t, lab in zip(trow, lrow) if lab != -100] for trow, lrow in zip(tags, labels)]
        return entity_metrics(gold, pred, self.scheme)

    def compute_metrics(self, eval_pred) -> dict:
        scores = self.scores(eval_pred.predictions, eval_pred.label_ids)
        out = {k: scores[k] for k in ("precision", "recall", "f1")}
        out.update({f"{t}_f1": s["f1"] for t, s in scores["per_type"].items()})
        return out


def evaluate(trainer: Trainer, features: DatasetDict, metrics: EntityMetrics, dataset: str, output_dir: Path) -> dict:
    """Scores of the labelled validation and test splits, printed and written as ``<split>_report.txt``."""
    results = {}
    for split in ("validation", "test"):
        if split not in features or "labels" not in features[split].column_names:
            continue
        prediction = trainer.predict(features[split], metric_key_prefix=split)
        scores = metrics.scores(prediction.predictions, prediction.label_ids)
        results.update({f"{split}_{k}": scores[k] for k in ("precision", "recall", "f1")})
        results[f"{split}_per_type"] = scores["per_type"]
        results[f"{split}_examples"] = len(prediction.label_ids)
        if trainer.is_world_process_zero():
            print(
                f"\n== {split}: strict entity-level scores ({dataset}, {len(prediction.label_ids)} "
                f"sentences)\n{scores['report']}"
            )
            (output_dir / f"{split}_report.txt").write_text(scores["report"], encoding="utf-8")
    return results


def run_record(
    trainer: Trainer, corpus, model_args: ModelArguments, data_args: DataArguments, training_args: NERTrainingArguments
) -> dict:
    """What all_results.json records about the run besides its scores (push_to_hub.py's model card reads it)."""
    return {
        "best_model_checkpoint": trainer.state.best_model_checkpoint,
        "dataset": data_args.dataset,
        "encoder": model_args.encoder,
        "char_vectors": model_args.char_vectors,
        "data_read": corpus.report.as_dict(),  # sentences --bad_tags repaired or skipped
        "arguments": {
            **dataclasses.asdict(model_args),
            **dataclasses.asdict(data_args),
            **{
                k: v if isinstance(v := getattr(training_args, k), (int, float, str, bool, type(None))) else str(v)
                for k in TRAINING_SETTINGS
            },
        },
    }


def check_memories_agree_across_processes(model, features: DatasetDict) -> None:
    """Under ``torchrun`` each process reads the corpus, fits the type classifier and retrieves memories
    by itself, and DDP only averages gradients: if the processes' banks, classifiers or memory ids
    differed, each would train on other memories without a sign. Compared by digest; a mismatch stops the run."""
    if (
        not (torch.distributed.is_available() and torch.distributed.is_initialized())
        or torch.distributed.get_world_size() < 2
    ):
        return
    digest = hashlib.sha256()
    for split in sorted(features):
        digest.update(np.asarray(features[split]["memory_ids"], dtype=np.int64).tobytes())
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(("memory_bank.", "type_classifier.")):
            digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    digests = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) > 1:
        raise RuntimeError(
            f"the {len(digests)} processes prepared different memories (bank, type classifier or memory ids); "
            "every process must read the same corpus with the same arguments"
        )
    logger.info("memories: the same bank, type classifier and memory ids in all %d processes", len(digests))


def write_predictions(trainer, features, raw, label_names, scheme, path: Path) -> None:
    """Tag an unlabelled split (CLUENER's test) and write it in CLUENER's JSON-lines layout."""
    tags = trainer.predict(features, metric_key_prefix="predict").predictions
    texts: dict[str, str] = {}
    labels: dict[str, dict] = {}
    for ex_id, tokens, row in zip(raw["id"], raw["tokens"], tags):
        base = ex_id.split("#")[0]  # the pieces of a long text follow each other
        offset = len(texts.get(base, ""))
        texts[base] = texts.get(base, "") + "".join(tokens)
        names = [label_names[t] for t in row[1 : len(tokens) + 1]]
        for span in tags_to_spans(names, scheme, strict=False):
            surface = "".join(tokens[span.start : span.end])
            labels.setdefault(base, {}).setdefault(span.type, {}).setdefault(surface, []).append(
                [offset + span.start, offset + span.end - 1]
            )
    if trainer.is_world_process_zero():
        with open(path, "w", encoding="utf-8") as f:
            for base, text in texts.items():
                f.write(
                    json.dumps({"id": base, "text": text, "label": labels.get(base, {})}, ensure_ascii=False) + "\n"
                )
        logger.info("wrote %d predictions to %s", len(texts), path)


if __name__ == "__main__":
    run_command(main, "train.py")
