#!/usr/bin/env python
"""Score a saved model or a training checkpoint on a corpus split, from raw text (``predict_tags``,
memories retrieved inside the call, as the pipeline does), with the strict entity metrics.

    python benchmarks/score_checkpoint.py benchmarks/runs/peoples_daily-tencent-entity/checkpoint-3285 \\
        --dataset peoples_daily --split test

For a run that could not finish: its last checkpoint's test score, next to the held-out F1 that chose it.
The pieces scored are those train.py scores (long lines cut to the model's window, the same split)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT  # noqa: F401  (first: it puts the repository on sys.path)

import torch
from transformers import AutoConfig, AutoTokenizer

from data_scripts.corpora import load_corpus
from data_scripts.metrics import entity_metrics
from modeling import MemoryNetConfig, MemoryNetForTokenClassification, Seq2SeqAttnTagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--dataset", required=True, help="as train.py's --dataset")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = AutoConfig.from_pretrained(args.folder)
    cls = MemoryNetForTokenClassification if isinstance(config, MemoryNetConfig) else Seq2SeqAttnTagger
    model = cls.from_pretrained(args.folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.folder)
    split = load_corpus(args.dataset, scheme=config.tag_scheme, max_chars=config.max_length - 2)[args.split]
    names = split.features["ner_tags"].feature.names
    gold = [[names[t] for t in tags] for tags in split["ner_tags"]]
    pred = model.predict_tags(["".join(t) for t in split["tokens"]], tokenizer, batch_size=args.batch_size)
    scores = entity_metrics(gold, pred, config.tag_scheme)
    out = {"folder": args.folder, "split": args.split, "sentences": len(gold),
           **{k: round(100 * scores[k], 2) for k in ("precision", "recall", "f1")},
           "per_type_f1": {t: round(100 * s["f1"], 2) for t, s in scores["per_type"].items()}}  # fmt: skip
    state = Path(args.folder, "trainer_state.json")
    if state.exists():
        log = json.loads(state.read_text())["log_history"]
        out["held_out_f1_by_epoch"] = [round(100 * e["eval_f1"], 2) for e in log if "eval_f1" in e]
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
