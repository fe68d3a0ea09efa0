"""The entity-type classifier of ``category`` retrieval (memory paper, section 2.1), trained with its own Trainer runs.

It predicts which entity types a sentence holds; category retrieval picks memories whose gold type
sets match. The training sentences' types are predicted out of fold, so that training memories
carry the same kind of errors as test memories.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer

from modeling.encoders import init_char_embeddings
from modeling.modeling_memory_ner import MemoryNetForEntityTypes

from .metrics import multilabel_scores
from .optim import build_optimizer

logger = logging.getLogger(__name__)


@dataclass
class TypeClassifierResult:
    """The trained classifier's weights, the 0/1 types it predicts for every split's sentences
    (out of fold for train), and its per-type scores on validation (and out of fold on train)."""

    state: dict[str, torch.Tensor]
    predicted: dict[str, np.ndarray]
    report: dict
    train_report: dict | None


def fit_type_classifier(
    config,
    train_ds,
    eval_ds,
    tokenizer,
    model_args,
    training_args,
    char_vectors,
    output_dir: Path,
    epochs: float,
    init=None,
    vocabularies=None,
):
    """One Trainer run of the multi-label entity-type classifier (``MemoryNetForEntityTypes``).

    With ``eval_ds`` it is evaluated every epoch and the best epoch kept, as the tagger is;
    without (the out-of-fold classifiers) it trains for ``epochs`` and keeps the last weights.
    ``init``: a trained classifier to start from (fine-tuning a saved model); ``vocabularies``: the tagger's own
    classifier, whose BiLSTM's bigram vocabulary and lexicon a new BiLSTM classifier reads."""
    encoder = model_args.type_classifier_encoder or model_args.encoder
    pretrained_start = init is None and encoder != "bilstm"
    clf = (
        MemoryNetForEntityTypes.from_encoder_pretrained(encoder, config)
        if pretrained_start
        else MemoryNetForEntityTypes(config)
    )
    if init is not None:
        clf.type_classifier.load_state_dict(init.state_dict())
    elif not pretrained_start:
        features = getattr(clf.type_classifier.encoder, "features", None)
        if features is not None:
            features.copy_vocabularies(vocabularies.encoder.features)
        if char_vectors:
            init_char_embeddings(clf.type_classifier.encoder.embeddings, tokenizer.get_vocab(), *char_vectors)
    # a pretrained classifier encoder trains at the paper's 3e-5 (or the tagger's --encoder_learning_rate when it is
    # the same encoder)
    pretrained = config.type_classifier_encoder[0] == "transformers"
    encoder_lr = (model_args.encoder_learning_rate if encoder == model_args.encoder else None) or (
        3e-5 if pretrained else training_args.learning_rate
    )
    logger.info(
        "entity-type classifier: %s (%s), lr encoder %g / other layers %g",
        config.type_classifier_kind,
        encoder,
        encoder_lr,
        training_args.learning_rate,
    )

    tagger = config.type_classifier_kind == "tagger"

    def type_metrics(eval_pred) -> dict:
        gold = eval_pred.label_ids[0] if tagger else eval_pred.label_ids  # the tagger's labels: (entity_types, tags)
        scores = multilabel_scores(gold, (eval_pred.predictions > 0).astype(int), config.entity_types)
        return {
            "f1": scores["micro"]["f1"],
            "precision": scores["micro"]["precision"],
            "recall": scores["micro"]["recall"],
        }

    args = dataclasses.replace(
        training_args,
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        save_total_limit=1,
        label_names=["entity_types", "labels"] if tagger else ["entity_types"],
    )
    if eval_ds is None:
        args = dataclasses.replace(args, eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    trainer = Trainer(
        model=clf,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=DataCollatorForTokenClassification(tokenizer) if tagger else DataCollatorWithPadding(tokenizer),
        compute_metrics=type_metrics,
        optimizers=(build_optimizer(clf, args, encoder_lr), None),
    )
    trainer.train()
    return trainer


def type_folds(texts: list[str], k: int, seed: int) -> np.ndarray:
    """Fold id of every training sentence; identical texts share a fold (a classifier must not have seen the text it
    predicts)."""
    unique = sorted(set(texts))
    fold_of = dict(zip(unique, np.random.default_rng(seed).permutation(len(unique)) % k))
    return np.array([fold_of[t] for t in texts])


def train_type_classifier(
    model, raw, features, gold_types, tokenizer, model_args, training_args, char_vectors
) -> TypeClassifierResult:
    """The multi-label entity-type classifier for ``category`` retrieval (section 2.1).

    Trained on the training split (its own Trainer run) and used to predict the types of the
    validation and test sentences; ``model`` is only read (its config, and when fine-tuning its
    saved classifier as the start). The
    training sentences' types are predicted out of fold (``--type_classifier_folds``): by
    classifiers that did not see them, so the tagger learns from memories retrieved with the same
    kind of errors it will meet at test time, not from in-sample predictions that are nearly gold.
    """
    config = model.config
    columns = ["input_ids", "attention_mask"] + (["labels"] if config.type_classifier_kind == "tagger" else [])
    clf_features = DatasetDict(
        {
            split: ds.select_columns(columns).add_column("entity_types", gold_types[split].tolist())
            for split, ds in features.items()
            if split in gold_types
        }
    )
    out_dir = Path(training_args.output_dir) / "type_classifier"
    init = model.type_classifier if model_args.model_name_or_path else None  # fine-tuning: from the saved classifier
    trainer = fit_type_classifier(
        config,
        clf_features["train"],
        clf_features["validation"],
        tokenizer,
        model_args,
        training_args,
        char_vectors,
        out_dir,
        model_args.type_classifier_epochs,
        init,
        model.type_classifier,
    )
    logits = {
        split: trainer.predict(ds.select_columns(["input_ids", "attention_mask"])).predictions
        for split, ds in features.items()
    }
    report = multilabel_scores(
        gold_types["validation"], (logits["validation"] > 0).astype(np.uint8), config.entity_types
    )
    train_report = None
    k = model_args.type_classifier_folds
    if k > 1:
        folds = type_folds(["".join(t) for t in raw["train"]["tokens"]], k, training_args.seed)
        for fold in range(k):
            held_out = np.flatnonzero(folds == fold)
            fold_trainer = fit_type_classifier(
                config,
                clf_features["train"].select(np.flatnonzero(folds != fold)),
                None,
                tokenizer,
                model_args,
                training_args,
                char_vectors,
                out_dir / f"fold{fold}",
                model_args.type_classifier_epochs,
                init,
                model.type_classifier,
            )
            held_out_inputs = features["train"].select(held_out).select_columns(["input_ids", "attention_mask"])
            logits["train"][held_out] = fold_trainer.predict(held_out_inputs).predictions
        train_report = multilabel_scores(
            gold_types["train"], (logits["train"] > 0).astype(np.uint8), config.entity_types
        )
    predicted = {split: (l > 0).astype(np.uint8) for split, l in logits.items()}
    if trainer.is_world_process_zero():
        print("\n== entity-type classifier on validation (multi-label, per type)")
        print(f"{'type':<14}{'P':>8}{'R':>8}{'F1':>8}{'support':>9}")
        for name, r in report.items():
            p, rec, f1 = (100 * r[k] for k in ("precision", "recall", "f1"))
            print(f"{name:<14}{p:>8.2f}{rec:>8.2f}{f1:>8.2f}{r['support']:>9}")
        if train_report is not None:
            micro = train_report["micro"]
            print(
                f"training sentences, {k}-fold out-of-fold predictions: micro P {100 * micro['precision']:.2f} "
                f"R {100 * micro['recall']:.2f} F1 {100 * micro['f1']:.2f}"
            )
    state = {k: v.detach().clone() for k, v in trainer.model.type_classifier.state_dict().items()}
    return TypeClassifierResult(state, predicted, report, train_report)
