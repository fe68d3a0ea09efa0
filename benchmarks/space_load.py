#!/usr/bin/env python
"""The Gradio Space under concurrent users: request latency (p50, p95) for N clients on loopback.

Starts ``space/app.py`` on 127.0.0.1 with ``NER_MODEL`` (``--model``; by default the memory network
trained on the embedded sample, as ``benchmarks/pipeline_speed.py`` builds it), then ``--clients``
threads each send their share of ``--requests`` texts through ``gradio_client`` one after another,
as people in front of the page do. A request's latency is from ``predict`` to its answer, queue
wait included. Texts are CLUENER dev sentences (the sample's dev texts without ``../shared/data``).

    python benchmarks/space_load.py [--model DIR] [--clients 20] [--requests 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, sample_model_folder

from data_scripts.corpora import load_corpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def texts_for(n: int) -> tuple[str, list[str]]:
    try:
        dev = load_corpus("cluener", max_chars=10**6)["validation"]
        source = "CLUENER dev"
    except FileNotFoundError:
        dev = load_corpus("sample", max_chars=10**6)["validation"]
        source = "the embedded sample's dev set"
    texts = ["".join(tokens) for tokens in dev["tokens"]]
    return source, [texts[k % len(texts)] for k in range(n)]


def start_space(model: Path, port: int, threads: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "NER_MODEL": str(model),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "space" / "app.py")], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.time() + 300
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the Space exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            return proc
        except OSError:
            if time.time() > deadline:
                proc.terminate()
                raise SystemExit(f"the Space did not answer on port {port}:\n{log.read_text()[-3000:]}")
            time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder (default: the sample memory network)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the Space process")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args()
    from gradio_client import Client

    model = Path(args.model) if args.model else sample_model_folder("memory", {})
    source, texts = texts_for(args.requests)
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "space.log"
    proc = start_space(model, port, args.threads, log)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(texts[0], api_name="/tag")  # warm-up: the bank's index and encodings
        per_client = [texts[k :: args.clients] for k in range(args.clients)]

        def one_client(mine: list[str]) -> list[float]:
            latencies = []
            for text in mine:
                start = time.perf_counter()
                status = client.predict(text, api_name="/tag")[0]
                latencies.append(time.perf_counter() - start)
                if "⚠️" in status:
                    raise SystemExit(f"the Space refused {text!r}: {status}")
            return latencies

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            latencies = sorted(t for mine in pool.map(one_client, per_client) for t in mine)
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * len(latencies)) - 1)]
    figures = {
        "model": str(model),
        "texts": source,
        "clients": args.clients,
        "requests": len(latencies),
        "threads": args.threads,
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(p95, 3),
        "max_s": round(latencies[-1], 3),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
    }
    print(
        f"{len(latencies)} requests from {args.clients} clients ({source}, {model.name}, {args.threads} threads): "
        f"p50 {figures['p50_s']:.2f} s, p95 {figures['p95_s']:.2f} s, max {figures['max_s']:.2f} s; "
        f"{figures['wall_s']:.1f} s in all ({figures['requests_per_s']:.1f} requests/s)"
    )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
