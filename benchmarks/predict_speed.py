#!/usr/bin/env python
"""``predict.py`` on a file against the ``chinese-ner`` pipeline called in-process on the same texts, and its memory.

The texts are MSRA train and test sentences (raw, as written), repeated to ``--sizes`` texts and written as ``.txt``
files under ``runs/``. The in-process rate is the pipeline on the same texts in one call (batch 32, the model
loaded), taken just before and just after each predict.py run (the machine's load changes); each predict.py run is
a fresh process, timed from start to the written output (the imports, the model load, the reading, the shards and the
merge included), with its peak resident memory, and its own rate once its model is loaded (its summary; with
``--num_proc`` above 1, its rate from the start of the tagging, the workers' loads included). Then predict.py on the
smallest size with ``--num_proc`` / ``--threads_per_proc`` settings, to choose the defaults.

    python benchmarks/predict_speed.py [--model DIR] [--sizes 10000 100000] [--threads 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time

from common import RUNS_DIR, ROOT, markdown_table, sample_model_folder

import torch  # noqa: E402
from transformers import pipeline  # noqa: E402

from data_scripts.corpora import load_corpus  # noqa: E402


def texts_file(size: int) -> tuple[str, int]:
    """MSRA train + test texts repeated to ``size`` lines: the file and its characters."""
    path = RUNS_DIR / f"predict-speed-{size}.txt"
    corpus = load_corpus("msra", None, "BIO", 10**6)
    texts = ["".join(t) for split in ("train", "test") for t in corpus[split]["tokens"]]
    lines = list(itertools.islice(itertools.cycle(texts), size))
    if not path.exists():
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path), sum(map(len, lines))


# predict.py run as __main__, then the peak RSS of its own process and of its worker processes (KB) on stderr
PEAK = (
    "import resource, runpy, sys\n"
    "sys.argv = ['predict.py', *sys.argv[1:]]\n"
    "try:\n    runpy.run_path('predict.py', run_name='__main__')\n"
    "finally:\n    print('PEAK', max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, "
    "resource.RUSAGE_CHILDREN)), file=sys.stderr)\n"
)


def run_predict(model: str, path: str, threads: int, num_proc: int = 1) -> tuple[float, float, float]:
    """A fresh ``predict.py`` process: wall seconds, its own characters/s (its summary) and the peak RSS (MB) of
    its largest process."""
    output = RUNS_DIR / "predict-speed-out.jsonl"
    args = [sys.executable, "-c", PEAK, "--model_name_or_path", model, "--input", path, "--output", str(output),
            "--num_proc", str(num_proc), "--threads_per_proc", str(threads), "--overwrite"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = int(next(line for line in proc.stderr.splitlines() if line.startswith("PEAK")).split()[1])
    # the rate once the model is loaded (predict.py reports it when it loads the model itself, --num_proc 1)
    loaded = [line for line in proc.stdout.splitlines() if line.startswith("the model loaded in")]
    own = loaded[0] if loaded else next(line for line in proc.stdout.splitlines() if line.startswith("this run:"))
    return seconds, float(own.rsplit(" ", 2)[1].replace(",", "")), peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder (default: the sample plain BiLSTM-CRF, trained if missing)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = args.model or str(sample_model_folder("plain", {}))
    torch.set_num_threads(args.threads)
    files = {size: texts_file(size) for size in sorted(args.sizes)}
    ner = pipeline("chinese-ner", model=model, trust_remote_code=True)
    ner(["北京"] * 64)

    def in_process(path: str) -> float:
        """The pipeline's rate on the file's texts now (taken beside each predict.py run: the load changes)."""
        texts = open(path, encoding="utf-8").read().splitlines()
        start = time.perf_counter()
        ner(texts)
        return sum(map(len, texts)) / (time.perf_counter() - start)

    runs = [(size, 1, args.threads) for size in files] + [(min(files), 2, 1), (min(files), 1, 1)]
    rows = []
    for size, num_proc, threads in runs:
        path, chars = files[size]
        before = in_process(path)
        seconds, own, peak = run_predict(model, path, threads, num_proc)
        reference = (before + in_process(path)) / 2
        rate = chars / seconds
        rows.append([f"{size:,}", f"{chars:,}", f"{num_proc} x {threads}", f"{seconds:.1f}", f"{rate:,.0f}",
                     f"{own:,.0f}", f"{reference:,.0f}", f"{rate / reference:.2f}", f"{own / reference:.2f}",
                     f"{peak:,.0f}"])  # fmt: skip
        print(rows[-1], flush=True)
    header = [
        "texts",
        "characters",
        "processes x threads",
        "wall s",
        "chars/s end to end",
        "chars/s once loaded",
        "in-process chars/s",
        "x in-process, end to end",
        "x in-process, once loaded",
        "peak RSS MB",
    ]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
