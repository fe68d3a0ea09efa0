#!/usr/bin/env python
"""The editable memory on real data: teach a trained memory network new entities by adding labelled
sentences to its bank, with no retraining.

CLUENER train is split into halves T1 and T2 (seeded; identical texts stay in one half). A memory
network (entity retrieval) and the plain tagger are trained on T1 alone, the bank holding T1. Then
T2's labelled sentences are added to the memory network's bank with ``add_memories`` and dev is
scored again: overall F1, and recall on the dev entities whose string is an entity in T2 but not in
T1 (the entities only the added sentences can teach). The upper bound is the memory network trained
on all of train (``memory_cluener.py``'s ``entity`` run of the same seed).

    python benchmarks/editable_memory.py --train [--parallel 2]   # write T1/T2, train the two T1 runs
    python benchmarks/editable_memory.py                          # score: before / after add_memories, controls
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from common import RUNS_DIR, results, run_all

from data_scripts.corpora import load_corpus  # noqa: E402
from data_scripts.features import default_data_dir  # noqa: E402
from data_scripts.memory_data import memory_evidence_rate  # noqa: E402
from data_scripts.metrics import entity_metrics  # noqa: E402
from data_scripts.readers import read_cluener_files  # noqa: E402
from modeling import MemoryNetForTokenClassification  # noqa: E402
from modeling.char_tokenization import encode_chars  # noqa: E402
from modeling.tag_schemes import tags_to_spans  # noqa: E402

SPLIT_DIR = RUNS_DIR / "editable-split"
COMMON = {"char_vectors": "tencent", "use_self_attention": True, "num_train_epochs": 8}
RUNS = {
    "editable-entity-T1-s1": {"num_memory": 4, "memory_method": "entity", "seed": 1},
    "editable-baseline-T1-s1": {"num_memory": 0, "seed": 1},
    # trained to take new entities from memories (modeling_memory_ner.swap_shared_entities)
    "editable-entity_swap50-T1-s1": {
        "num_memory": 4,
        "memory_method": "entity",
        "memory_entity_swap_prob": 0.5,
        "seed": 1,
    },
}
# memory_cluener.py: the same models trained on all of train (the upper bounds)
FULL_TRAIN_RUNS = {
    "editable-entity-T1-s1": "memory-entity-s1",
    "editable-entity_swap50-T1-s1": "memory-entity_swap50-s1",
}


def split_halves(seed: int = 0) -> dict[str, Path]:
    """CLUENER train.json lines -> T1.json / T2.json, halves of the distinct texts drawn with ``seed``."""
    lines = (default_data_dir() / "cluener" / "train.json").read_text(encoding="utf-8").splitlines()
    texts = sorted({json.loads(line)["text"] for line in lines if line.strip()})
    first = set(np.array(texts, dtype=object)[np.random.default_rng(seed).permutation(len(texts))[: len(texts) // 2]])
    SPLIT_DIR.mkdir(parents=True, exist_ok=True)
    halves = {"T1": SPLIT_DIR / "T1.json", "T2": SPLIT_DIR / "T2.json"}
    for name, path in halves.items():
        keep = [line for line in lines if line.strip() and (json.loads(line)["text"] in first) == (name == "T1")]
        path.write_text("\n".join(keep) + "\n", encoding="utf-8")
    return halves


def run_arguments(halves: dict[str, Path]) -> dict[str, dict]:
    data = {
        "dataset": "files",
        "train_file": halves["T1"],
        "validation_file": default_data_dir() / "cluener" / "dev.json",
    }
    return {name: {**data, **COMMON, **flags} for name, flags in RUNS.items()}


def entity_strings(ds) -> set[str]:
    return {
        "".join(tokens[s.start : s.end])
        for tokens, tags in zip(ds["tokens"], ds["ner_tags"])
        for s in tags_to_spans([ds.features["ner_tags"].feature.int2str(t) for t in tags], "BIOS")
    }


def score(model, tokenizer, dev, only_t2: set[str]) -> dict:
    """Dev F1 of ``model`` on raw text (retrieval inside the call), its recall on the entities whose string is only
    in T2, and how many of those its memories hold with their type (None for the plain tagger)."""
    names = dev.features["ner_tags"].feature.names
    texts = ["".join(t) for t in dev["tokens"]]
    gold = [[names[t] for t in tags] for tags in dev["ner_tags"]]
    pred = model.predict_tags(texts, tokenizer, batch_size=64)
    scores = entity_metrics(gold, pred, "BIOS")
    new_spans = [
        [s for s in tags_to_spans(g, "BIOS") if text[s.start : s.end] in only_t2] for text, g in zip(texts, gold)
    ]
    hits = sum(len(set(spans) & set(tags_to_spans(p, "BIOS", strict=False))) for spans, p in zip(new_spans, pred))
    total = sum(len(spans) for spans in new_spans)
    evidence = None
    if model.config.num_memory > 0:
        bank = model.memory_bank
        id2label = model.config.id2label
        bank_spans = [tags_to_spans([id2label[t] for t in row if t != -100], "BIOS") for row in bank.labels.tolist()]
        evidence = (
            100
            * memory_evidence_rate(
                new_spans, texts, retrieved(model, tokenizer, texts), bank_spans, bank.sentence_texts()
            )["entity_rate"]
        )
    return {"f1": 100 * scores["f1"], "t2_only_recall": 100 * hits / total, "t2_only_entities": total,
            "t2_only_evidence": evidence}  # fmt: skip


def retrieved(model, tokenizer, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """The bank indices ``[len(texts), n]`` the model retrieves for raw texts, as in ``predict_tags``."""
    out = []
    for i in range(0, len(texts), batch_size):
        enc = encode_chars(tokenizer, [list(t) for t in texts[i : i + batch_size]], model.config.max_length)
        enc = tokenizer.pad({k: enc[k] for k in ("input_ids", "attention_mask")}, return_tensors="pt")
        out.append(model.retrieve_memories(enc["input_ids"], enc["attention_mask"]).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="write T1/T2 and train the runs that have not finished")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS), help="the T1 runs to train")
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    halves = split_halves()
    if args.train:
        runs = run_arguments(halves)
        run_all({name: runs[name] for name in args.runs}, args.parallel, "editable-memory runs")
    t1 = read_cluener_files({"train": halves["T1"]}, "BIOS", 62)["train"]
    t2 = read_cluener_files({"train": halves["T2"]}, "BIOS", 62)["train"]
    dev = load_corpus("cluener", None, "BIOS", 62)["validation"]
    only_t2 = entity_strings(t2) - entity_strings(t1)
    print(f"T1 {len(t1)} / T2 {len(t2)} sentences; {len(only_t2)} entity strings only in T2")

    rows = []
    t2_texts = ["".join(t) for t in t2["tokens"]]
    t2_tags = [[t2.features["ner_tags"].feature.int2str(i) for i in tags] for tags in t2["ner_tags"]]
    for name, label in (
        ("editable-baseline-T1-s1", "plain tagger, trained on T1"),
        ("editable-entity-T1-s1", "memory (entity), trained on T1, bank T1"),
        ("editable-entity_swap50-T1-s1", "memory (entity, swap 0.5), trained on T1, bank T1"),
    ):
        model = load(name)
        if model is None:
            continue
        rows.append((label, score(*model, dev, only_t2)))
        if name in FULL_TRAIN_RUNS:
            model[0].add_memories(t2_texts, t2_tags, model[1])
            rows.append(("the same, T2 added with add_memories, no retraining", score(*model, dev, only_t2)))
            full = load(FULL_TRAIN_RUNS[name])
            if full is not None:
                rows.append(
                    (f"the same model trained on all of train ({FULL_TRAIN_RUNS[name]})", score(*full, dev, only_t2))
                )
    print(
        "| model | dev F1 | recall, dev entities only in T2 | of those, with a same-type occurrence in the memories |"
        "\n|---|---|---|---|"
    )
    for label, r in rows:
        evidence = f"{r['t2_only_evidence']:.2f}" if r["t2_only_evidence"] is not None else "–"
        print(f"| {label} | {r['f1']:.2f} | {r['t2_only_recall']:.2f} (of {r['t2_only_entities']}) | {evidence} |")


def load(name: str):
    """A finished run's model (eval mode) and tokenizer, or None."""
    if results(name) is None:
        print(f"{name}: not run")
        return None
    folder = RUNS_DIR / name
    return MemoryNetForTokenClassification.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


if __name__ == "__main__":
    main()
