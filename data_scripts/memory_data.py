"""The memory stage: a corpus prepared for the memory model (the bank, each example's memories, the
entity-type classifier of category retrieval) as one :class:`MemoryPlan`; and the label-embedding init."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict

from modeling.memory_bank import MemoryBank
from modeling.retrieval import (
    CLASSIFIER_METHODS,
    INDEX_METHODS,
    TYPE_METHODS,
    BankIndex,
    RetrievalCache,
    pos_strings,
    rank_memories,
)

from .metrics import multilabel_scores
from .readers import Corpus, dataset_spans
from .type_classifier import train_type_classifier

logger = logging.getLogger(__name__)


def type_matrix(spans_per_example, entity_types: list[str]) -> np.ndarray:
    """``[examples, types]`` 0/1: which entity types each example contains."""
    index = {t: i for i, t in enumerate(entity_types)}
    out = np.zeros((len(spans_per_example), len(entity_types)), dtype=np.uint8)
    for row, spans in enumerate(spans_per_example):
        for s in spans:
            out[row, index[s.type]] = 1
    return out


def gold_type_matrices(raw: Corpus, scheme: str, entity_types: list[str]) -> dict[str, np.ndarray]:
    """The gold :func:`type_matrix` of every labelled split."""
    return {
        split: type_matrix(dataset_spans(ds, scheme), entity_types)
        for split, ds in raw.items()
        if "ner_tags" in ds.column_names
    }


def blend_gold_types(
    predicted: dict[str, np.ndarray], gold: dict[str, np.ndarray], share: float, seed: int
) -> dict[str, np.ndarray]:
    """An analysis oracle between ``category`` and ``gold_category``: in every split, the predicted
    type sets of ``round(share * rows)`` rows, drawn with ``seed``, are replaced by the gold ones.

    The other rows keep the classifier's errors, so the blend has the classifier's kind of mistakes
    at a lower rate: how good would a type classifier have to be for the memories to pay off?
    Splits without gold types (CLUENER's unlabelled test) keep the predicted ones.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the share of gold type sets must be within [0, 1], got {share}")
    out = {}
    for split, types in predicted.items():
        if split not in gold:  # an unlabelled split (CLUENER's test) keeps the classifier's types
            out[split] = types
            continue
        blended = types.copy()
        rows = np.random.default_rng([seed, *split.encode()]).permutation(len(types))[: round(share * len(types))]
        blended[rows] = gold[split][rows]
        out[split] = blended
    return out


@dataclass
class MemoryPlan:
    """What the memory stage prepares for a ``MemoryNetForTokenClassification``, before the model takes
    it (``model.apply_memory_plan``): the training split as the memory bank, the memories of every
    example, the trained entity-type classifier (category / hybrid retrieval) and a report."""

    bank: MemoryBank
    memory_ids: dict[str, np.ndarray]  # per split, [examples, n] bank indices
    type_classifier_state: dict[str, torch.Tensor] | None = None
    report: dict = field(
        default_factory=dict
    )  # all_results.json's memory, type_classifier_* and retrieval_types_micro

    def with_memory_ids(self, features: DatasetDict) -> DatasetDict:
        """The splits that have memories, each with its ``memory_ids`` column."""
        return DatasetDict(
            {
                split: ds.add_column("memory_ids", self.memory_ids[split].tolist())
                for split, ds in features.items()
                if split in self.memory_ids
            }
        )


def prepare_memories(
    model, corpus: Corpus, features: DatasetDict, tokenizer, model_args, training_args, char_vectors=None
) -> MemoryPlan:
    """The memory stage of ``train.py``: the entity-type classifier (category / hybrid retrieval, with
    its out-of-fold predictions for the training sentences), POS tags, the bank, and each example's
    ``num_memory`` memories (``modeling.retrieval.rank_memories``). Training queries never retrieve
    themselves or an identical text. Retrieval and POS results are cached under the output folder.

    ``model`` is read, not changed; ``model_args`` / ``training_args`` are train.py's (the classifier's
    settings, and the Trainer settings its runs start from)."""
    config = model.config
    gold_types = gold_type_matrices(corpus, corpus.tag_scheme, config.entity_types)
    report: dict = {}
    classifier = predicted_types = None
    if model.type_classifier is not None:
        classifier = train_type_classifier(
            model, corpus, features, gold_types, tokenizer, model_args, training_args, char_vectors
        )
        predicted_types = classifier.predicted
        report["type_classifier_validation"] = classifier.report
        if classifier.train_report is not None:
            report["type_classifier_train_out_of_fold"] = classifier.train_report
        if model_args.oracle_type_share:
            predicted_types = blend_gold_types(
                predicted_types, gold_types, model_args.oracle_type_share, training_args.seed
            )
            report["retrieval_types_micro"] = {
                split: multilabel_scores(gold_types[split], types, config.entity_types)["micro"]
                for split, types in predicted_types.items()
                if split in gold_types
            }
            logger.info(
                "retrieval types: %s of each split's type sets replaced by gold; micro F1 %s",
                model_args.oracle_type_share,
                {split: round(100 * r["f1"], 2) for split, r in report["retrieval_types_micro"].items()},
            )
    with training_args.main_process_first(desc="retrieving memories"):
        bank, memory_ids, retrieval = retrieve_memories(
            corpus,
            features,
            config,
            tokenizer.get_vocab(),
            gold_types,
            Path(training_args.output_dir) / "retrieval_cache",
            training_args.seed,
            predicted_types,
        )
    logger.info("retrieval: %s", retrieval)
    report["memory"] = {"num_memory": config.num_memory, "method": config.memory_method, **retrieval}
    return MemoryPlan(bank, memory_ids, classifier.state if classifier else None, report)


def retrieve_memories(
    corpus: Corpus,
    features: DatasetDict,
    config,
    vocab: dict[str, int],
    gold_types: dict[str, np.ndarray],
    cache_dir: str | Path,
    seed: int = 0,
    predicted_types: dict[str, np.ndarray] | None = None,
) -> tuple[MemoryBank, dict[str, np.ndarray], dict]:
    """The bank (the training split) and the memory ids of every split, by ``config.memory_method``.

    ``gold_types`` are the splits' gold :func:`type_matrix` (the bank's type sets; the queries' for
    ``gold_category``); ``predicted_types`` (for ``category``) the classifier's, per split. Returns
    the bank, the ids and a report (retrieval seconds per split, cache hits)."""
    n, method = config.num_memory, config.memory_method
    if method in CLASSIFIER_METHODS and predicted_types is None:
        raise ValueError(f"memory_method {method!r} needs the entity types the classifier predicts for every split")
    cache = RetrievalCache(cache_dir)
    texts = {split: ["".join(t) for t in ds["tokens"]] for split, ds in corpus.items()}
    report = {}

    def pos_of(split: str) -> list[str]:
        key = cache.key("pos", 0, texts[split])
        result, seconds, hit = cache.get_or_compute(
            key, lambda: np.array(pos_strings(texts[split], show_progress=True), dtype=object)
        )
        report[f"{split}_pos_seconds"] = round(seconds, 2)
        return list(result)

    bank_pos = pos_of("train")
    bank_types = gold_types["train"]
    bank = MemoryBank.from_sentences(
        features["train"]["input_ids"], features["train"]["labels"], bank_types, bank_pos, vocab, texts["train"]
    )
    index, seen_texts = None, texts
    if (
        method in INDEX_METHODS
    ):  # the texts as the model sees them (rebuilt from ids), so that training and raw-text retrieval agree
        index = BankIndex.of_bank(bank, config.id2label, config.tag_scheme)
        seen_texts = {split: [bank.text_of(ids) for ids in ds["input_ids"]] for split, ds in features.items()}
    memory_ids = {}
    for split, ds in features.items():
        query_types = {
            "gold_category": gold_types,
            "category": predicted_types or {},
            "hybrid": predicted_types or {},
        }.get(method, {}).get(split)
        if method in TYPE_METHODS and query_types is None:
            logger.warning(
                "split %s has no %s entity types to retrieve its memories by: left out", split, method.split("_")[0]
            )
            continue
        query_pos = bank_pos if split == "train" else pos_of(split)
        exclude = list(range(len(ds))) if split == "train" else None
        key = cache.key(
            method,
            n,
            texts["train"],
            texts[split],
            bank_types,
            query_types if query_types is not None else np.zeros(1),
            [seed, split == "train"],
        )
        ids, seconds, hit = cache.get_or_compute(
            key,
            lambda: rank_memories(
                method,
                n,
                bank_pos,
                bank_types,
                query_pos,
                query_types,
                exclude,
                seen_texts[split],
                seen_texts["train"],
                seed,
                index,
            ),
        )
        report[f"{split}_retrieval_seconds"] = round(seconds, 2)
        report[f"{split}_retrieval_cached"] = hit
        logger.info("memories for %s: %s, n=%d, %s", split, method, n, "from cache" if hit else f"{seconds:.1f}s")
        memory_ids[split] = np.asarray(ids)
    return bank, memory_ids, report


def entity_type_vectors(raw: Corpus, scheme: str, tokens: list[str], vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Per entity type, the mean over its training entities of the mean vector of their characters
    (the paper averages 300-d word vectors, falling back to characters; here 200-d character vectors)."""
    row = {t: i for i, t in enumerate(tokens)}
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for chars, spans in zip(raw["train"]["tokens"], dataset_spans(raw["train"], scheme)):
        for s in spans:
            rows = [row[c] for c in chars[s.start : s.end] if c in row]
            if not rows:
                continue
            sums[s.type] = sums.get(s.type, 0) + vectors[rows].mean(axis=0)
            counts[s.type] = counts.get(s.type, 0) + 1
    return {t: sums[t] / counts[t] for t in sums}


def memory_evidence_rate(query_spans, query_texts, memory_ids, bank_spans, bank_texts) -> dict:
    """How often the memories hold the query's own evidence: the share of the query's gold entities
    whose string and type are labelled as an entity in at least one of its memories, and the share
    of queries with an entity for which that holds for at least one entity.

    ``query_spans`` / ``bank_spans``: per sentence its ``Span`` list (``start``, ``end``, ``type``);
    ``memory_ids``: ``[queries, n]`` bank indices. Comparing this on training and on dev queries
    shows whether training memories are luckier than those met at test time.
    """
    bank_entities = [{(bank_texts[j][s.start : s.end], s.type) for s in spans} for j, spans in enumerate(bank_spans)]
    found = total = sentences = sentences_hit = 0
    for text, spans, ids in zip(query_texts, query_spans, memory_ids):
        if not spans:
            continue
        memory_entities = set().union(*(bank_entities[int(j)] for j in ids))
        hits = sum((text[s.start : s.end], s.type) in memory_entities for s in spans)
        found, total = found + hits, total + len(spans)
        sentences, sentences_hit = sentences + 1, sentences_hit + (hits > 0)
    return {
        "entities": total,
        "entity_rate": found / total if total else 0.0,
        "sentences": sentences,
        "sentence_rate": sentences_hit / sentences if sentences else 0.0,
    }
