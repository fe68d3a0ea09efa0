#!/usr/bin/env python
"""Tag unlabelled text files with a saved model (the ``--do_predict`` of run_ner.py, made a command).

    python predict.py --model_name_or_path outputs/sample-memory --input news/*.txt --output entities.jsonl
    python predict.py --model_name_or_path you/chinese-ner-memory --input data.parquet --text_column content \\
        --output entities.parquet --num_proc 2 --threads_per_proc 1
    python predict.py ... --engine ray --ray_address auto        # the same on a Ray cluster

Inputs: ``.txt`` (a text a line), ``.jsonl`` / ``.json``, ``.csv`` / ``.tsv``, ``.parquet``, ``datasets``
``save_to_disk`` folders; several, or globs. Output: JSON lines or Parquet, one row per input row: ``file``,
``row`` (0-based) and the pipeline's ``entities`` (``entity_group``, ``score``, ``word``, ``start``, ``end``),
with ``--return_memories`` the memory sentences of each window. Memory stays flat on any input size; an
interrupted run started again with the same arguments goes on where it stopped (``data_scripts.batch_predict``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Literal

from tqdm.auto import tqdm
from transformers import HfArgumentParser

from data_scripts.batch_predict import (
    load_pipeline,
    ON_ERROR,
    OUTPUT_FORMATS,
    ShardStore,
    first_error,
    iter_shards,
    output_format,
    summary,
    tag_shard,
)
from data_scripts.errors import UserError, run_command
from data_scripts.text_inputs import expand_inputs, iter_rows

ENGINES = ("local", "ray")
BACKENDS = ("torch", "onnx")


@dataclass
class PredictArguments:
    model_name_or_path: str = field(metadata={"help": "a folder written by train.py, or a Hub model id"})
    input: list[str] = field(metadata={"help": "input files, datasets folders or glob patterns", "nargs": "+"})
    output: str = field(metadata={"help": "the output file, .jsonl or .parquet"})
    text_column: str = field(
        default="text", metadata={"help": "the text field of .jsonl/.json/.csv/.parquet/datasets"}
    )
    output_format: Literal[OUTPUT_FORMATS] | None = field(default=None, metadata={"help": "default: the suffix"})
    return_memories: bool = field(default=False, metadata={"help": "memory network: each window's memory sentences"})
    force_entities: bool = field(default=False, metadata={"help": "the entities taught by name override the model"})
    batch_size: int = field(default=32, metadata={"help": "windows per forward pass"})
    shard_size: int = field(default=1_000, metadata={"help": "rows per shard (the unit written and resumed)"})
    on_error: Literal[ON_ERROR] = field(
        default="skip", metadata={"help": "a row that is not text: skip it (reported with file and line) or stop"}
    )
    num_proc: int = field(default=1, metadata={"help": "processes on this machine, each loading the model once"})
    threads_per_proc: int | None = field(
        default=None, metadata={"help": "torch threads a process (default: cores / num_proc)"}
    )
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1, ..."})
    backend: Literal[BACKENDS] = field(
        default="torch",
        metadata={"help": "torch, or onnx: ONNX Runtime on the graphs of model.export_onnx(MODEL/onnx), no torch"},
    )
    engine: Literal[ENGINES] = field(
        default="local", metadata={"help": "local processes, or Ray Data (pip install -r requirements-ray.txt)"}
    )
    ray_address: str | None = field(
        default=None, metadata={"help": "a Ray cluster (auto, ray://host:10001); default: a local Ray"}
    )
    overwrite: bool = field(default=False, metadata={"help": "start again, dropping an unfinished run's shards"})

    def __post_init__(self):
        if self.shard_size < 1 or self.batch_size < 1 or self.num_proc < 1:
            raise UserError("--shard_size, --batch_size and --num_proc must be at least 1")
        if self.backend == "onnx" and (self.return_memories or self.device != "cpu"):
            raise UserError("--backend onnx tags on the CPU and returns no memories (use --backend torch for those)")
        self.threads_per_proc = self.threads_per_proc or max(1, (os.cpu_count() or 1) // self.num_proc)

    def check_model_location(self) -> None:
        """A model folder that is not there is named before anything is read or written."""
        name = self.model_name_or_path
        if not os.path.isdir(name) and (os.path.isabs(name) or name.startswith(".") or name.count("/") != 1):
            raise UserError(f"--model_name_or_path {name!r}: no such model folder (nor a Hub id, which is owner/name)")

    def run_arguments(self, inputs: list[str]) -> dict:
        """What decides the output rows: a resumed run must have the same (the parts folder records them)."""
        return {
            "model": self.model_name_or_path, "inputs": [os.path.abspath(p) for p in inputs],
            "text_column": self.text_column, "shard_size": self.shard_size, "force_entities": self.force_entities,
            "columns": ["file", "row", "entities"] + (["memories"] if self.return_memories else []),
        }  # fmt: skip


def call_options(args: PredictArguments) -> dict:
    return {"return_memories": args.return_memories, **({"force_entities": True} if args.force_entities else {})}


_WORKER: dict = {}


def _start_worker(args: PredictArguments) -> None:
    start = time.perf_counter()
    _WORKER["ner"] = load_pipeline(args)
    _WORKER["load_seconds"] = time.perf_counter() - start


def _tag_and_write(store: ShardStore, shard, options: dict) -> dict:
    records, meta = tag_shard(_WORKER["ner"], shard, **options)
    store.write(shard.name, records, meta)
    return meta


def run_local(args: PredictArguments, store: ShardStore, shards, bar) -> list[dict]:
    """Tag the shards in this process, or in ``num_proc`` processes (each loads the model once; at most two shards
    a process are read ahead, so memory stays flat)."""
    done: list[dict] = []

    def finished(meta: dict) -> None:
        done.append(meta)
        bar.update(meta["texts"])
        characters = sum(m["characters"] for m in done)
        bar.set_postfix_str(f"{characters / max(bar.format_dict['elapsed'], 1e-9):,.0f} chars/s", refresh=False)

    options = call_options(args)
    if args.num_proc == 1:
        _start_worker(args)
        for shard in shards:
            finished(_tag_and_write(store, shard, options))
        return done
    context = get_context("spawn")  # torch's threads do not survive a fork
    with ProcessPoolExecutor(args.num_proc, mp_context=context, initializer=_start_worker, initargs=(args,)) as pool:
        running = set()
        for shard in shards:
            if len(running) >= 2 * args.num_proc:
                complete, running = wait(running, return_when=FIRST_COMPLETED)
                for future in complete:
                    finished(future.result())
            running.add(pool.submit(_tag_and_write, store, shard, options))
        for future in wait(running).done:
            finished(future.result())
    return done


def checked(shards, on_error: str):
    """The shards, stopping at the first row that is not text when ``on_error`` is ``stop``."""
    for shard in shards:
        problem = first_error(shard) if on_error == "stop" else None
        if problem:
            raise UserError(f"{problem} (--on_error stop; --on_error skip reports such rows and goes on)")
        yield shard


def main() -> int:
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.WARNING)
    parser = HfArgumentParser(PredictArguments)
    (args,) = parser.parse_args_into_dataclasses()
    args.check_model_location()
    inputs = expand_inputs(args.input)
    for path in inputs:  # a missing column is found before the model is loaded
        next(iter_rows(path, args.text_column), None)
    store = ShardStore(args.output, output_format(args.output, args.output_format), args.run_arguments(inputs))
    done_before = store.open(args.overwrite)
    if done_before:
        print(f"resuming: {len(done_before)} shards of {store.folder} are done", file=sys.stderr)
    start = time.perf_counter()
    with tqdm(desc="tagging", unit=" texts", dynamic_ncols=True) as bar:
        if args.engine == "ray":
            from data_scripts.ray_predict import run_ray

            tagged = run_ray(args, store, inputs, done_before, call_options(args), bar)
        else:
            shards = checked(iter_shards(inputs, args.text_column, args.shard_size, skip=done_before), args.on_error)
            tagged = run_local(args, store, shards, bar)
    seconds = time.perf_counter() - start
    metas = store.metas()
    store.merge()
    print(summary(metas, seconds, tagged, _WORKER.get("load_seconds")))  # loaded here with --num_proc 1
    print(f"wrote {store.output}")
    return 0


if __name__ == "__main__":
    run_command(main, "predict.py")
