"""Strict entity-level metrics: the one scoring function of train.py, benchmarks and tests.

An entity counts as correct only if type, start and end all match. Tags of any scheme are read
into spans (gold strictly; predictions leniently, where an ill-formed piece is simply not an
entity), written in BIOES, and scored by seqeval in strict IOBES mode, which gives the micro
P/R/F1 and the per-type report. Works offline.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from seqeval.metrics import classification_report
from seqeval.scheme import IOBES

from modeling.tag_schemes import spans_to_tags, tags_to_spans


def _as_bioes(tags: Sequence[str], scheme: str, strict: bool) -> list[str]:
    return spans_to_tags(tags_to_spans(tags, scheme, strict=strict), len(tags), "BIOES")


def entity_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str, digits: int = 4) -> dict:
    """Micro precision/recall/F1 over entities, per-type scores, and seqeval's printed report.

    ``gold`` and ``pred`` are tag-string sequences of equal lengths, in ``scheme``.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted")
    y_true, y_pred = [], []
    for g, p in zip(gold, pred):
        if len(g) != len(p):
            raise ValueError(f"a gold sequence has {len(g)} tags but its prediction {len(p)}")
        y_true.append(_as_bioes(g, scheme, strict=True))
        y_pred.append(_as_bioes(p, scheme, strict=False))
    kwargs = dict(mode="strict", scheme=IOBES, zero_division=0)
    report = classification_report(y_true, y_pred, output_dict=True, **kwargs)
    text = classification_report(y_true, y_pred, digits=digits, **kwargs) if any(map(len, y_true)) else ""
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {
        t: {
            "precision": float(r["precision"]),
            "recall": float(r["recall"]),
            "f1": float(r["f1-score"]),
            "support": int(r["support"]),
        }
        for t, r in report.items()
        if not t.endswith(" avg")
    }
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "support": int(micro["support"]),
        "per_type": per_type,
        "report": text,
    }


def multilabel_scores(gold: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> dict:
    """Per-type and micro P/R/F1 of 0/1 ``[examples, types]`` predictions (the entity-type classifier)."""

    def prf(g: np.ndarray, p: np.ndarray) -> dict:
        tp, n_pred, n_gold = int((g & p).sum()), int(p.sum()), int(g.sum())
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}

    gold, pred = np.asarray(gold, dtype=bool), np.asarray(pred, dtype=bool)
    out = {name: prf(gold[:, i], pred[:, i]) for i, name in enumerate(names)}
    out["micro"] = prf(gold, pred)
    return out
