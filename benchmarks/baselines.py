#!/usr/bin/env python
"""Char BiLSTM-CRF baselines: CLUENER dev (with / without Tencent char vectors), People's Daily 1998
80/20 test and MSRA test, and the memory network with ``entity`` retrieval on the same two test sets
(``*-entity``, in the same setup plus 4 memories and self-attention). Each run is a plain
``train.py`` invocation; the table is read back from the runs' ``all_results.json``.

    python benchmarks/baselines.py                      # all runs, two at a time (one thread each)
    python benchmarks/baselines.py --runs cluener cluener-tencent --parallel 2
    python benchmarks/baselines.py --table-only         # re-print the table from finished runs
"""

from __future__ import annotations

import argparse

from common import flags_from_argv, results, run_all

LONG = {"max_seq_length": 128, "per_device_train_batch_size": 32}
PLAIN = {"num_memory": 0, "use_self_attention": False}  # train.py's defaults are the memory network's
ENTITY = {"num_memory": 4, "memory_method": "entity", "use_self_attention": True}
TENCENT = {"char_vectors": "tencent"}

# name -> (train.py flags, split reported, paper figure for comparison)
RUNS = {
    "cluener": ({"dataset": "cluener"}, "validation", "70.00 (memory paper, test); 67.47 (published dev)"),
    "cluener-tencent": ({"dataset": "cluener", **TENCENT}, "validation", "70.16 (memory paper, LSTM+CRF+char, test)"),
    "peoples_daily-tencent": (
        {"dataset": "peoples_daily", **TENCENT, **LONG, "num_train_epochs": 8},
        "test",
        "89.91 (seq2seq paper BiLSTM-CRF)",
    ),
    # MSRA: twice the text of People's Daily, so half the epochs (what fits in a 3-hour session on 2 cores)
    "msra-tencent": (
        {"dataset": "msra", **TENCENT, **LONG, "num_train_epochs": 4},
        "test",
        "89.08 (seq2seq paper BiLSTM-CRF, on its 23,700/4,400 subset)",
    ),
    # the memory network, entity retrieval, in the two runs' setups above (not run by default)
    "peoples_daily-tencent-entity": (
        {"dataset": "peoples_daily", **TENCENT, **LONG, "num_train_epochs": 8, **ENTITY},
        "test",
        "BiLSTM-CRF: peoples_daily-tencent",
    ),
    "msra-tencent-entity": (
        {"dataset": "msra", **TENCENT, **LONG, "num_train_epochs": 4, **ENTITY},
        "test",
        "BiLSTM-CRF: msra-tencent",
    ),
}
DEFAULT_RUNS = [name for name in RUNS if not name.endswith("-entity")]


def table(names: list[str]) -> str:
    rows = [
        "| run | split | sentences | P | R | F1 | best epoch | wall (min) | paper |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        _, split, paper = RUNS[name]
        res = results(name)
        if res is None:
            rows.append(f"| {name} | {split} | – | – | – | (not run) | – | – | {paper} |")
            continue
        epoch = f"{res['best_epoch']:.0f}" if res["best_epoch"] else "–"
        wall = f"{res['wall_minutes']:.1f}" if res["wall_minutes"] else "–"
        rows.append(
            f"| {name} | {split} | {res.get(split + '_examples', '–')} | {100 * res[split + '_precision']:.2f} | "
            f"{100 * res[split + '_recall']:.2f} | **{100 * res[split + '_f1']:.2f}** | {epoch} | {wall} | {paper} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, choices=list(RUNS))
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (each gets cores // parallel threads)")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("extra", nargs="*", help="more train.py arguments after --, e.g. -- --num_train_epochs 1")
    args = parser.parse_args()
    if not args.table_only:
        # later keys win: the memory runs' ENTITY flags override PLAIN
        run_all(
            {name: {**PLAIN, **RUNS[name][0], **flags_from_argv(args.extra)} for name in args.runs},
            args.parallel,
            "baseline runs",
        )
    print(table(args.runs))


if __name__ == "__main__":
    main()
