#!/usr/bin/env python
"""Retrieval against bank size: cold and warm time per query, memory in use, model file size.

Banks of 10,748 (CLUENER train) up to 500,000 sentences, all distinct texts: first the real
training sentences of CLUENER, MSRA and People's Daily (100,082 distinct), then splices of two
of them, ``A[:a] + B[b:]`` with both cuts outside entities, which keep real n-gram statistics and
real entity strings. For each size and method: the cold time (building the ``BankIndex`` and
answering the first query, what the first raw-text call after loading pays), the warm time per
query (one CLUENER dev sentence per call, as the pipeline retrieves at batch 1: wall time and the
process's CPU time, which other load on the machine does not inflate), the resident memory the
bank index adds, and the size of a saved model of that bank (``model.safetensors`` of a memory
network whose bank holds the sentences).

    python benchmarks/retrieval_scale.py [--sizes 10748 100000 500000] [--methods entity lexical] [--queries 200]
    # writes benchmarks/retrieval_scale.png (other sizes or methods: runs/retrieval_scale.png) and
    # runs/retrieval_scale.json, and prints a Markdown table
    python benchmarks/retrieval_scale.py --replot   # the PNG again from the last run's figures
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import common  # noqa: E402, F401  (puts the repository on sys.path)

from data_scripts.corpora import load_corpus  # noqa: E402
from data_scripts.features import default_data_dir, load_tokenizer  # noqa: E402
from modeling import MemoryNetConfig, MemoryNetForTokenClassification  # noqa: E402
from modeling.char_tokenization import encode_chars  # noqa: E402
from modeling.memory_bank import MemoryBank  # noqa: E402
from modeling.retrieval import BankIndex, rank_memories  # noqa: E402
from modeling.tag_schemes import tags_to_spans  # noqa: E402


RESULTS_JSON = Path(__file__).resolve().parent / "runs" / "retrieval_scale.json"
COMMITTED_PNG = Path(__file__).resolve().with_name("retrieval_scale.png")
FULL_SIZES = [10748, 50000, 100000, 250000, 500000]
FULL_METHODS = ["entity", "lexical"]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def index_mb(index: BankIndex) -> float:
    """What a ``BankIndex`` holds: its sparse matrices and arrays, the TF-IDF vocabulary (a dict of
    n-gram strings, and the sorted keys queries are looked up in) and the entity-string automaton.
    (The process's resident-memory growth is also reported, but freed memory is reused between
    sizes, so it is only a rough check.)"""
    arrays = [
        index.matrix.data,
        index.matrix.indices,
        index.matrix.indptr,
        index.postings.data,
        index.postings.indices,
        index.postings.indptr,
        index.unigrams.data,
        index.unigrams.indices,
        index.unigrams.indptr,
        index.distinct_ids,
        index.row_of,
        index.unigram_ids,
        index.vectorizer.idf_,
        index.gram_keys,
        index.gram_order,
    ]
    vocabulary = index.vectorizer.vocabulary_
    total = sum(a.nbytes for a in arrays) + sys.getsizeof(vocabulary) + sum(sys.getsizeof(k) for k in vocabulary)
    if index.num_entity_strings:  # the trie, and per entity string the sentences labelling it
        total += index.automaton.get_stats()["total_size"] + sum(
            ids.nbytes + 100 for _, ids in index.automaton.values()
        )
    return total / 2**20


def model_file_mb(ids, labels, types, num_labels: dict, vocab_size: int) -> float:
    """``model.safetensors`` of a BiLSTM memory network (the default sizes) whose bank holds these sentences."""
    config = MemoryNetConfig(
        encoder_type="bilstm", vocab_size=vocab_size, num_memory=4, memory_method="entity", id2label=num_labels
    )
    model = MemoryNetForTokenClassification(config)
    model.set_memory_bank(MemoryBank.from_sentences(ids, labels, types, ["" for _ in ids]))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return Path(tmp, "model.safetensors").stat().st_size / 2**20


def real_sentences() -> tuple[list[str], list[list[tuple[int, int, str]]], list[str]]:
    """The training sentences of CLUENER, MSRA and People's Daily (as train.py cuts them), with their
    entities, and CLUENER's label names (the saved model's label set)."""
    texts, entities, label_names = [], [], None
    for name in ("cluener", "msra", "peoples_daily"):
        raw = load_corpus(name, None, "BIOS", 62)
        names = raw["train"].features["ner_tags"].feature.names
        label_names = label_names or names
        for tokens, tags in zip(raw["train"]["tokens"], raw["train"]["ner_tags"]):
            texts.append("".join(tokens))
            entities.append([(s.start, s.end, s.type) for s in tags_to_spans([names[i] for i in tags], "BIOS")])
    return texts, entities, label_names


def synthesize(
    texts: list[str], entities: list, size: int, seed: int = 0, max_chars: int = 62
) -> tuple[list[str], list]:
    """``size`` distinct bank sentences: the real ones first (in order), then splices ``A[:a] + B[b:]``
    of two random real sentences, cut outside their entities, with the entities of both parts."""
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out_texts, out_entities = [], []
    for text, spans in zip(texts, entities):
        if len(out_texts) < size and text not in seen:
            seen.add(text)
            out_texts.append(text)
            out_entities.append(list(spans))

    def cuts(text, spans):
        inside = np.zeros(len(text) + 1, dtype=bool)
        for start, end, _ in spans:
            inside[start + 1 : end] = True
        return np.flatnonzero(~inside[1 : len(text)]) + 1

    cut_points = [cuts(t, e) for t, e in zip(texts, entities)]
    while len(out_texts) < size:
        i, j = rng.integers(0, len(texts), 2)
        if not len(cut_points[i]) or not len(cut_points[j]):
            continue
        a, b = int(rng.choice(cut_points[i])), int(rng.choice(cut_points[j]))
        text = texts[i][:a] + texts[j][b:]
        if not 4 <= len(text) <= max_chars or text in seen:
            continue
        seen.add(text)
        out_texts.append(text)
        out_entities.append(
            [s for s in entities[i] if s[1] <= a] + [(s - b + a, e - b + a, t) for s, e, t in entities[j] if s >= b]
        )
    return out_texts, out_entities


def plot(rows: list[dict], methods: list[str], output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for method in methods:
        sub = [r for r in rows if r["method"] == method]
        x = [r["size"] for r in sub]
        axes[0].plot(x, [r["warm_ms"] for r in sub], "o-", label=f"{method}, warm")
        if all("warm_cpu_ms" in r for r in sub):
            axes[0].plot(x, [r["warm_cpu_ms"] for r in sub], "s:", label=f"{method}, warm (CPU time)")
        axes[0].plot(x, [r["cold_s"] * 1000 for r in sub], "x--", label=f"{method}, cold")
        axes[1].plot(x, [r["index_mb"] for r in sub], "o-", label=method)
    axes[0].axhline(5, color="grey", lw=0.8, ls=":", label="5 ms target")
    axes[0].set_yscale("log")
    files = [r for r in rows if "file_mb" in r]
    axes[2].plot([r["size"] for r in files], [r["file_mb"] for r in files], "o-", color="black")
    for ax, title, unit in zip(
        axes, ("retrieval time per query", "index memory", "model.safetensors"), ("ms", "MB", "MB")
    ):
        ax.set_title(title)
        ax.set_xlabel("bank sentences")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.suptitle(
        "Retrieval against bank size (distinct sentences: CLUENER, MSRA, People's Daily, then splices; 2 CPU cores, "
        f"{torch.get_num_threads()} torch threads)"
    )
    fig.tight_layout()
    fig.savefig(output, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=FULL_SIZES)
    parser.add_argument("--methods", nargs="+", default=FULL_METHODS)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the queries; the fastest is reported")
    parser.add_argument("--no-file-size", action="store_true", help="skip saving a model per size")
    parser.add_argument(
        "-o",
        "--output",
        help="the PNG (default: the committed benchmarks/retrieval_scale.png for the full run of the default sizes "
        "and methods, runs/retrieval_scale.png for any other)",
    )
    parser.add_argument(
        "--replot", action="store_true", help=f"draw the PNG again from {RESULTS_JSON.name} of the last run"
    )
    parser.add_argument(
        "--json", default=str(RESULTS_JSON), help="where the figures are written (and --replot reads them)"
    )
    args = parser.parse_args()
    if args.output is None:  # a partial run must not replace the committed curve
        full = args.sizes == FULL_SIZES and args.methods == FULL_METHODS
        args.output = str(COMMITTED_PNG if full or args.replot else RESULTS_JSON.with_suffix(".png"))
    if args.replot:
        rows = json.loads(Path(args.json).read_text())
        plot(rows, sorted({r["method"] for r in rows}, key=[r["method"] for r in rows].index), args.output)
        return

    texts, entities, names = real_sentences()
    queries = [
        json.loads(line)["text"] for line in (default_data_dir() / "cluener" / "dev.json").open(encoding="utf-8")
    ][: args.queries]
    tokenizer, _ = load_tokenizer(None, [list(t) for t in texts[:10748]], tempfile.gettempdir())
    rows = []
    for size in args.sizes:
        bank_texts, bank_entities = synthesize(texts, entities, size)
        pos = [""] * size
        types = np.zeros((size, 1), dtype=np.uint8)
        for method in args.methods:
            gc.collect()
            before = rss_mb()
            start = time.perf_counter()
            index = BankIndex(bank_texts, bank_entities)
            rank_memories(method, 4, pos, types, [""], None, None, queries[:1], bank_texts, index=index)
            cold = time.perf_counter() - start
            memory = rss_mb() - before
            held = index_mb(index)
            wall, cpu = [], []
            for _ in range(args.repeats):  # the best of a few passes: the machine's other load only adds
                start, start_cpu = time.perf_counter(), time.process_time()
                for q in queries:
                    rank_memories(method, 4, pos, types, [""], None, None, [q], bank_texts, index=index)
                wall.append((time.perf_counter() - start) / len(queries) * 1000)
                cpu.append((time.process_time() - start_cpu) / len(queries) * 1000)
            rows.append(
                {
                    "size": size,
                    "method": method,
                    "cold_s": cold,
                    "warm_ms": min(wall),
                    "warm_cpu_ms": min(cpu),
                    "index_mb": held,
                    "rss_mb": memory,
                }
            )
            print(
                f"bank {size:>7}  {method:<8} cold {cold:6.2f} s  warm {min(wall):6.2f} ms/query (CPU {min(cpu):5.2f} "
                f"ms)  index {held:6.0f} MB (resident +{memory:.0f} MB)",
                flush=True,
            )
            del index
        if not args.no_file_size:
            enc = encode_chars(tokenizer, [list(t) for t in bank_texts], 64)
            labels = [[-100] + [0] * (len(ids) - 2) + [-100] for ids in enc["input_ids"]]
            rows[-1]["file_mb"] = model_file_mb(
                enc["input_ids"], labels, np.zeros((size, 10), dtype=np.uint8), dict(enumerate(names)), len(tokenizer)
            )
            print(f"bank {size:>7}  model.safetensors {rows[-1]['file_mb']:.0f} MB", flush=True)

    print(
        "\n| bank sentences | method | cold (s) | warm (ms/query) | warm CPU (ms/query) | index memory (MB) | model "
        "file (MB) |\n|---|---|---|---|---|---|---|"
    )
    for r in rows:
        file_mb = next((x["file_mb"] for x in rows if x["size"] == r["size"] and "file_mb" in x), None)
        print(
            f"| {r['size']:,} | {r['method']} | {r['cold_s']:.2f} | {r['warm_ms']:.2f} | {r['warm_cpu_ms']:.2f} | "
            f"{r['index_mb']:.0f} | "
            f"{f'{file_mb:.0f}' if file_mb is not None else '–'} |"
        )

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))
    plot(rows, args.methods, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
