"""Shared by the benchmark scripts: run ``train.py`` configurations in parallel and read their results."""

from __future__ import annotations

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


def run_one(name: str, args: list[str], threads: int) -> float:
    """``python train.py ARGS --output_dir benchmarks/runs/NAME``, logged to ``train.log``; wall seconds."""
    out = RUNS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "train.py", *args, "--output_dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.time()
    with open(out / "train.log", "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    elapsed = time.time() - start
    (out / "wall_seconds.txt").write_text(f"{elapsed:.0f}\n")
    return elapsed


def run_all(runs: dict[str, list[str]], parallel: int, desc: str) -> None:
    """Run several configurations, ``parallel`` at a time, each with ``cores // parallel`` threads.

    A run whose folder already has ``all_results.json`` is finished and skipped (its log and
    results are kept); delete the folder to run it again."""
    finished = [name for name in runs if (RUNS_DIR / name / "all_results.json").exists()]
    if finished:
        print(f"skipped, already finished (delete the folder to rerun): {', '.join(finished)}")
        runs = {name: args for name, args in runs.items() if name not in finished}
    threads = max(1, (os.cpu_count() or 2) // parallel)
    with ThreadPoolExecutor(parallel) as pool, tqdm(total=len(runs), desc=desc, unit="run") as bar:
        futures = [pool.submit(run_one, name, args, threads) for name, args in runs.items()]
        for fut in as_completed(futures):
            fut.result()
            bar.update(1)


def results(name: str) -> dict | None:
    """A finished run's ``all_results.json`` plus ``best_epoch`` and ``wall_minutes``, or None."""
    path = RUNS_DIR / name / "all_results.json"
    if not path.exists():
        return None
    res = json.loads(path.read_text())
    wall = RUNS_DIR / name / "wall_seconds.txt"
    res["wall_minutes"] = float(wall.read_text()) / 60 if wall.exists() else None
    state = Path(res.get("best_model_checkpoint") or "") / "trainer_state.json"
    res["best_epoch"] = None
    if state.is_file():
        st = json.loads(state.read_text())
        res["best_epoch"] = next((h["epoch"] for h in st["log_history"] if h.get("eval_f1") == st.get("best_metric")), None)
    return res
