#!/usr/bin/env python
"""Char BiLSTM-CRF baselines: CLUENER dev (with / without Tencent char vectors), People's Daily 1998
80/20 test and MSRA test. Each run is a plain ``train.py`` invocation; the table is read back from
the runs' ``all_results.json``.

    python benchmarks/baselines.py                      # all runs, two at a time (one thread each)
    python benchmarks/baselines.py --runs cluener cluener-tencent --parallel 2
    python benchmarks/baselines.py --table-only         # re-print the table from finished runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
RUNS_DIR = ROOT / "benchmarks" / "runs"

# name -> (train.py arguments, split reported, paper figure for comparison)
RUNS = {
    "cluener": (["--dataset", "cluener"], "validation", "70.00 (memory paper, test); 67.47 (published dev)"),
    "cluener-tencent": (["--dataset", "cluener", "--char_vectors", "tencent"], "validation", "70.16 (memory paper, LSTM+CRF+char, test)"),
    "peoples_daily-tencent": (
        ["--dataset", "peoples_daily", "--char_vectors", "tencent", "--max_seq_length", "128",
         "--per_device_train_batch_size", "32", "--num_train_epochs", "8"],
        "test", "89.91 (seq2seq paper BiLSTM-CRF)",
    ),
    "msra-tencent": (
        ["--dataset", "msra", "--char_vectors", "tencent", "--max_seq_length", "128",
         "--per_device_train_batch_size", "32", "--num_train_epochs", "8"],
        "test", "89.08 (seq2seq paper BiLSTM-CRF, on its 23,700/4,400 subset)",
    ),
}


def run(name: str, extra: list[str], threads: int) -> float:
    args, _, _ = RUNS[name]
    out = RUNS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "train.py", *args, "--output_dir", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.time()
    with open(out / "train.log", "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    elapsed = time.time() - start
    (out / "wall_seconds.txt").write_text(f"{elapsed:.0f}\n")
    return elapsed


def table(names: list[str]) -> str:
    rows = ["| run | split | sentences | P | R | F1 | best epoch | wall (min) | paper |", "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        args, split, paper = RUNS[name]
        res_path = RUNS_DIR / name / "all_results.json"
        if not res_path.exists():
            rows.append(f"| {name} | {split} | – | – | – | (not run) | – | – | {paper} |")
            continue
        res = json.loads(res_path.read_text())
        wall = RUNS_DIR / name / "wall_seconds.txt"
        best = res.get("best_model_checkpoint") or ""
        state = Path(best) / "trainer_state.json"
        epoch = "–"
        if state.exists():
            st = json.loads(state.read_text())
            epoch = next((f"{h['epoch']:.0f}" for h in st["log_history"] if h.get("eval_f1") == st.get("best_metric")), "–")
        wall_min = f"{float(wall.read_text()) / 60:.1f}" if wall.exists() else "–"
        rows.append(
            f"| {name} | {split} | {res.get(split + '_examples', '–')} | {100 * res[split + '_precision']:.2f} | "
            f"{100 * res[split + '_recall']:.2f} | **{100 * res[split + '_f1']:.2f}** | {epoch} | {wall_min} | {paper} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (each gets cores // parallel threads)")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("extra", nargs="*", help="more train.py arguments after --, e.g. -- --num_train_epochs 1")
    args = parser.parse_args()
    if not args.table_only:
        threads = max(1, (os.cpu_count() or 2) // args.parallel)
        with ThreadPoolExecutor(args.parallel) as pool, tqdm(total=len(args.runs), desc="baseline runs", unit="run") as bar:
            futures = {pool.submit(run, name, args.extra, threads): name for name in args.runs}
            for fut in as_completed(futures):
                fut.result()
                bar.update(1)
    print(table(args.runs))


if __name__ == "__main__":
    main()
