"""Preparing a corpus for the memory model: the bank, each example's memories, label-embedding init."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from datasets import DatasetDict

from modeling.retrieval import INDEX_METHODS, TYPE_METHODS, RetrievalCache, pos_strings, rank_memories

from .readers import dataset_spans

logger = logging.getLogger(__name__)


def type_matrix(spans_per_example, entity_types: list[str]) -> np.ndarray:
    """``[examples, types]`` 0/1: which entity types each example contains."""
    index = {t: i for i, t in enumerate(entity_types)}
    out = np.zeros((len(spans_per_example), len(entity_types)), dtype=np.uint8)
    for row, spans in enumerate(spans_per_example):
        for s in spans:
            out[row, index[s.type]] = 1
    return out


def gold_type_matrices(raw: DatasetDict, scheme: str, entity_types: list[str]) -> dict[str, np.ndarray]:
    """The gold :func:`type_matrix` of every labelled split."""
    return {split: type_matrix(dataset_spans(ds, scheme), entity_types) for split, ds in raw.items() if "ner_tags" in ds.column_names}


def blend_gold_types(predicted: dict[str, np.ndarray], gold: dict[str, np.ndarray], share: float, seed: int) -> dict[str, np.ndarray]:
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


def attach_memories(
    raw: DatasetDict,
    features: DatasetDict,
    model,
    vocab: dict[str, int],
    gold_types: dict[str, np.ndarray],
    cache_dir: str | Path,
    seed: int = 0,
    predicted_types: dict[str, np.ndarray] | None = None,
) -> tuple[DatasetDict, dict]:
    """Fill ``model``'s memory bank with the training split and add ``memory_ids`` to every split.

    ``gold_types`` are the splits' gold :func:`type_matrix` (the bank's type sets; the queries' for
    ``gold_category``); ``predicted_types`` (for ``category``) the classifier's, per split.
    Training queries never retrieve themselves or an identical text. Returns the features and a
    report (retrieval seconds per split, cache hits).
    """
    config = model.config
    n, method = config.num_memory, config.memory_method
    if method in ("category", "hybrid") and predicted_types is None:
        raise ValueError(f"memory_method {method!r} needs the entity types the classifier predicts for every split")
    cache = RetrievalCache(cache_dir)
    texts = {split: ["".join(t) for t in ds["tokens"]] for split, ds in raw.items()}
    report = {}

    def pos_of(split: str) -> list[str]:
        key = cache.key("pos", 0, texts[split])
        result, seconds, hit = cache.get_or_compute(key, lambda: np.array(pos_strings(texts[split], show_progress=True), dtype=object))
        report[f"{split}_pos_seconds"] = round(seconds, 2)
        return list(result)

    bank_pos = pos_of("train")
    bank_types = gold_types["train"]
    model.set_memory_bank(features["train"]["input_ids"], features["train"]["labels"], bank_types, bank_pos, vocab)
    index, seen_texts = None, texts
    if method in INDEX_METHODS:  # the texts as the model sees them (rebuilt from ids), so that training and raw-text retrieval agree
        index = model.bank_index()
        seen_texts = {split: [model.memory_bank.text_of(ids) for ids in ds["input_ids"]] for split, ds in features.items()}
    out = DatasetDict()
    for split, ds in features.items():
        query_types = {"gold_category": gold_types, "category": predicted_types or {}, "hybrid": predicted_types or {}}.get(method, {}).get(split)
        if method in TYPE_METHODS and query_types is None:
            logger.warning("split %s has no %s entity types to retrieve its memories by: left out", split, method.split("_")[0])
            continue
        query_pos = bank_pos if split == "train" else pos_of(split)
        exclude = list(range(len(ds))) if split == "train" else None
        key = cache.key(method, n, texts["train"], texts[split], bank_types, query_types if query_types is not None else np.zeros(1), [seed, split == "train"])
        ids, seconds, hit = cache.get_or_compute(
            key,
            lambda: rank_memories(method, n, bank_pos, bank_types, query_pos, query_types, exclude, seen_texts[split], seen_texts["train"], seed, index),
        )
        report[f"{split}_retrieval_seconds"] = round(seconds, 2)
        report[f"{split}_retrieval_cached"] = hit
        logger.info("memories for %s: %s, n=%d, %s", split, method, n, "from cache" if hit else f"{seconds:.1f}s")
        out[split] = ds.add_column("memory_ids", ids.tolist())
    return out, report


def entity_type_vectors(raw: DatasetDict, scheme: str, tokens: list[str], vectors: np.ndarray) -> dict[str, np.ndarray]:
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
    return {"entities": total, "entity_rate": found / total if total else 0.0,
            "sentences": sentences, "sentence_rate": sentences_hit / sentences if sentences else 0.0}
