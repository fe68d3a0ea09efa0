"""The one scoring function: strict entity matching, equal to a direct count of spans."""

import random

from data_scripts.metrics import entity_metrics
from modeling.tag_schemes import Span, spans_to_tags, tags_to_spans


def direct_scores(gold_spans, pred_spans):
    tp = sum(len(set(g) & set(p)) for g, p in zip(gold_spans, pred_spans))
    n_pred, n_gold = sum(map(len, pred_spans)), sum(map(len, gold_spans))
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def test_strict_matching_equals_direct_span_count():
    rng = random.Random(0)
    for scheme in ("BIOS", "BIEO", "BIO"):
        gold_spans, pred_spans, gold, pred = [], [], [], []
        for _ in range(300):
            n = rng.randint(1, 15)
            spans, pos = [], 0
            while pos < n:
                pos += rng.randint(0, 3)
                size = rng.randint(1, 3)
                if pos + size <= n:
                    spans.append(Span(rng.choice("AB"), pos, pos + size))
                pos += size
            # a prediction: drop, shift or retype some entities
            guess = []
            for s in spans:
                x = rng.random()
                if x < 0.6:
                    guess.append(s)
                elif x < 0.7:
                    guess.append(Span("B" if s.type == "A" else "A", s.start, s.end))
                elif x < 0.8 and s.end - s.start > 1:
                    guess.append(Span(s.type, s.start, s.end - 1))
            gold.append(spans_to_tags(spans, n, scheme))
            pred.append(spans_to_tags(guess, n, scheme))
            gold_spans.append(spans)
            pred_spans.append(guess)
        scores = entity_metrics(gold, pred, scheme)
        p, r, f = direct_scores(gold_spans, pred_spans)
        assert (
            abs(scores["precision"] - p) < 1e-9 and abs(scores["recall"] - r) < 1e-9 and abs(scores["f1"] - f) < 1e-9
        )
        assert set(scores["per_type"]) == {"A", "B"}
        assert "micro avg" in scores["report"]


def test_ill_formed_predictions_score_nothing_and_boundaries_must_match():
    gold = [["B-PER", "I-PER", "O", "S-LOC"]]
    assert entity_metrics(gold, [["O", "I-PER", "O", "S-LOC"]], "BIOS")["precision"] == 1.0  # I- alone is no entity
    half = entity_metrics(gold, [["B-PER", "I-PER", "I-PER", "S-LOC"]], "BIOS")  # PER one character too long
    assert half["precision"] == 0.5 and half["recall"] == 0.5
    assert tags_to_spans(["O", "I-PER"], "BIOS", strict=False) == []
