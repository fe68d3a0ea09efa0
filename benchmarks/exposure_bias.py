#!/usr/bin/env python
"""How much a trained seq2seq tagger loses to its own mistakes (exposure bias).

On the run's test split, two ways of choosing each character's tag with the same decoder:

* greedy: step i is fed the decoder's own choice at step i-1, as at inference (the reported F1);
* gold history: step i is fed the *gold* tag of character i-1, as in teacher-forced training, and
  the step's best tag is taken. Not a decoder (it reads the gold tags); it shows how good each step
  is when nothing before it went wrong.

The difference is the F1 lost because errors feed forward. Also counted: how often the greedy
decoder's choice right after its first wrong tag in a sentence is wrong again, against how often a
gold-history step is wrong at the same positions.

    python benchmarks/exposure_bias.py seq2seq8ep-msra seq2seq16ep_ss25-peoples_daily [...]
"""

from __future__ import annotations

import argparse

import torch

from common import RUNS_DIR  # noqa: E402  (first: it puts the repository on sys.path)

from seq2seq_pd_msra import test_batches  # noqa: E402
from data_scripts.metrics import entity_metrics  # noqa: E402
from modeling import Seq2SeqAttnTagger  # noqa: E402


@torch.no_grad()
def measure(name: str) -> dict:
    model = Seq2SeqAttnTagger.from_pretrained(RUNS_DIR / name).eval()
    id2label = model.config.id2label
    gold, greedy, history = [], [], []
    after_error = {"greedy_wrong": 0, "gold_history_wrong": 0, "positions": 0}
    for ids, mask, labels, gold_tags in test_batches(name, model):
        hidden = model.encode(ids, mask)
        decoded, _ = model.generate_tags(attention_mask=mask, hidden=hidden, num_beams=1)
        step_logits, _ = model.teacher_forced_logits(hidden, mask, labels)
        forced = model.align_to_input_ids(step_logits.argmax(-1), mask)
        for b, tags in enumerate(gold_tags):
            n = len(tags)
            g, d, f = labels[b, 1 : n + 1], decoded[b, 1 : n + 1], forced[b, 1 : n + 1]
            if [id2label[int(t)] for t in g] != tags:
                raise ValueError(f"{name}: the corpus's tag ids are not the model's id2label")
            gold.append(tags)
            greedy.append([id2label[int(t)] for t in d])
            history.append([id2label[int(t)] for t in f])
            wrong = (d != g).nonzero()
            if len(wrong) and int(wrong[0]) + 1 < n:  # the step right after the first greedy mistake
                i = int(wrong[0]) + 1
                after_error["positions"] += 1
                after_error["greedy_wrong"] += int(d[i] != g[i])
                after_error["gold_history_wrong"] += int(f[i] != g[i])
    scheme = model.config.tag_scheme
    return {
        "greedy": entity_metrics(gold, greedy, scheme),
        "gold history": entity_metrics(gold, history, scheme),
        "after_error": after_error,
        "sentences": len(gold),
        "p": model.config.scheduled_sampling_prob,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="seq2seq run folders under benchmarks/runs/")
    args = parser.parse_args()
    rows = [
        "| run | scheduled sampling p | test sentences | F1 greedy | F1 gold history | lost to own mistakes | "
        "wrong right after the first greedy mistake: greedy / gold history |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.runs:
        m = measure(name)
        g, h, a = 100 * m["greedy"]["f1"], 100 * m["gold history"]["f1"], m["after_error"]
        pos = max(a["positions"], 1)
        rows.append(
            f"| {name} | {m['p']} | {m['sentences']} | {g:.2f} | {h:.2f} | {h - g:.2f} | "
            f"{100 * a['greedy_wrong'] / pos:.1f}% / {100 * a['gold_history_wrong'] / pos:.1f}% (of {a['positions']}) "
            "|"
        )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
