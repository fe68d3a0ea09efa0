#!/usr/bin/env python
"""Search errors or model errors: would a wider beam close the seq2seq tagger's gap?

For every test sentence a trained seq2seq run tags wrongly, compare the model's own score of the
tags it found with its score of the gold tags. Both scores are the sum over characters of the step
log-probabilities (log-softmax of the step logits, the quantity the beam search maximises), each
step fed the previous tag of the same sequence, so the gold score is what the beam would give the
gold sequence had it kept it.

* search error: the gold tags score higher than the output. The decoder lost the better sequence,
  and a wider beam could find it;
* model error: the output scores at least as high as the gold tags. Better search cannot help;
  only a better model can.

    python benchmarks/search_errors.py seq2seq16ep-peoples_daily [seq2seq16ep-msra ...] [--beams 1 4 16]
"""

from __future__ import annotations

import argparse

import torch

from common import RUNS_DIR  # noqa: E402  (first: it puts the repository on sys.path)

from seq2seq_pd_msra import test_batches  # noqa: E402
from data_scripts.metrics import entity_metrics  # noqa: E402
from modeling import Seq2SeqAttnTagger  # noqa: E402


def path_scores(step_logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """``[batch]``: the summed log-softmax of ``tags`` (aligned with ``input_ids``, ``-100`` off characters)."""
    log_probs = torch.log_softmax(step_logits.float(), dim=-1)
    chosen = log_probs.gather(-1, tags.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return chosen.masked_fill(tags < 0, 0.0).sum(dim=1)


@torch.no_grad()
def measure(name: str, beams: list[int], limit: int | None = None) -> list[dict]:
    model = Seq2SeqAttnTagger.from_pretrained(RUNS_DIR / name).eval()
    id2label = model.config.id2label
    found = {k: {"pred": [], "wrong": 0, "search": 0, "margin": []} for k in beams}
    gold_all, gold_disallowed = [], 0
    allowed, can_end = model.transition_constraints(torch.device("cpu"))
    for ids, mask, labels, gold_tags in test_batches(name, model):
        if limit is not None and len(gold_all) >= limit:
            break
        hidden = model.encode(ids, mask)
        forced, _ = model.teacher_forced_logits(hidden, mask, labels)
        gold_score = path_scores(model.align_to_input_ids(forced, mask), labels)
        for b, tags in enumerate(gold_tags):  # a gold sequence the tag scheme forbids would score -inf in the beam
            g = labels[b, 1 : len(tags) + 1]
            prev = torch.cat([torch.tensor([model.go_id]), g[:-1]])
            if not bool(allowed[prev, g].all() and can_end[g[-1]]):
                gold_disallowed += 1
                gold_score[b] = float("-inf")
        gold_all += gold_tags
        for k in beams:
            decoded, step_logits = model.generate_tags(attention_mask=mask, hidden=hidden, num_beams=k)
            score = path_scores(step_logits, decoded)
            for b, tags in enumerate(gold_tags):
                d = decoded[b, 1 : len(tags) + 1]
                found[k]["pred"].append([id2label[int(t)] for t in d])
                if not torch.equal(d, labels[b, 1 : len(tags) + 1]):
                    found[k]["wrong"] += 1
                    found[k]["search"] += int(gold_score[b] > score[b])
                    found[k]["margin"].append(float(score[b] - gold_score[b]))
    rows = []
    for k in beams:
        f = found[k]
        margins = sorted(m for m in f["margin"] if m == m and m != float("inf"))
        rows.append(
            {
                "beam": k,
                "sentences": len(gold_all),
                "f1": entity_metrics(gold_all, f["pred"], model.config.tag_scheme)["f1"],
                "wrong": f["wrong"],
                "search": f["search"],
                "gold_disallowed": gold_disallowed,
                "median_margin": margins[len(margins) // 2] if margins else float("nan"),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="seq2seq run folders under benchmarks/runs/")
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 4, 16], help="beam widths to decode with")
    parser.add_argument("--limit", type=int, help="only the first sentences of the test split (a quick look)")
    args = parser.parse_args()
    lines = [
        "| run | beam | test sentences | F1 | sentences tagged wrong | search errors (gold scores higher) | model "
        "errors | "
        "median log-prob margin, output - gold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.runs:
        for r in measure(name, args.beams, args.limit):
            wrong = max(r["wrong"], 1)
            lines.append(
                f"| {name} | {r['beam']} | {r['sentences']} | {100 * r['f1']:.2f} | {r['wrong']} | "
                f"{r['search']} ({100 * r['search'] / wrong:.1f}%) | {r['wrong'] - r['search']} "
                f"({100 * (r['wrong'] - r['search']) / wrong:.1f}%) | "
                f"{r['median_margin']:.2f} |"
            )
        if r["gold_disallowed"]:
            lines.append(f"| {name} | (gold tag sequences the scheme forbids: {r['gold_disallowed']}) | | | | | | |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
