"""``predict.py --engine ray``: the same shards, tagged by Ray Data (``pip install -r requirements-ray.txt``).

One read task per input file cuts it into the shards of :mod:`.batch_predict` (the done ones read past); an actor
pool of ``--num_proc`` taggers, each loading the model once with ``--threads_per_proc`` CPUs, tags a shard at a time
and writes it into the parts folder as the local engine does; the driver merges. On a cluster
(``--ray_address auto``) the inputs and the output must be on storage every node sees.
"""

from __future__ import annotations

import json

from .batch_predict import Shard, ShardStore, file_shards, first_error, load_pipeline, tag_shard
from .errors import UserError
from .text_inputs import Row


def _shards_of(inputs: list[str], text_column: str, shard_size: int, done: set[str], on_error: str):
    """A Ray Data UDF: a batch of input file indices -> batches of one shard each (its rows as JSON)."""

    def read(batch):
        for file_index in batch["file_index"]:
            file_index = int(file_index)
            for shard in file_shards(file_index, inputs[file_index], text_column, shard_size, done):
                problem = first_error(shard) if on_error == "stop" else None
                if problem:
                    raise UserError(f"{problem} (--on_error stop; --on_error skip reports such rows and goes on)")
                yield {"shard": [json.dumps([file_index, shard.chunk, [list(r) for r in shard.rows]])]}

    return read


class _Tagger:
    """A Ray actor: the model loaded once; each call tags and writes one shard, and returns its meta."""

    def __init__(self, args, store: ShardStore, options: dict):
        self.ner, self.store, self.options = load_pipeline(args), store, options

    def __call__(self, batch):
        metas = []
        for encoded in batch["shard"]:
            file_index, chunk, rows = json.loads(encoded)
            shard = Shard(file_index, chunk, [Row(*r) for r in rows])
            records, meta = tag_shard(self.ner, shard, **self.options)
            self.store.write(shard.name, records, meta)
            metas.append(json.dumps(meta))
        return {"meta": metas}


def run_ray(args, store: ShardStore, inputs: list[str], done: set[str], options: dict, bar) -> list[dict]:
    """Tag every shard not ``done`` with Ray Data; the metas of the shards tagged."""
    import ray

    if not ray.is_initialized():
        ray.init(address=args.ray_address, log_to_driver=False, include_dashboard=False,
                 **({} if args.ray_address else {"num_cpus": args.num_proc * args.threads_per_proc}))  # fmt: skip
    files = ray.data.from_items([{"file_index": k} for k in range(len(inputs))], override_num_blocks=len(inputs))
    shards = files.map_batches(
        _shards_of(inputs, args.text_column, args.shard_size, done, args.on_error), batch_size=1
    )
    tagged = shards.map_batches(
        _Tagger,
        fn_constructor_args=(args, store, options),
        batch_size=1,
        concurrency=args.num_proc,
        num_cpus=args.threads_per_proc,
    )
    out = []
    try:
        for row in tagged.iter_rows():
            meta = json.loads(row["meta"])
            out.append(meta)
            bar.update(meta["texts"])
    except Exception as err:  # a task's UserError comes back wrapped: said in one line, as the local engine says it
        cause = getattr(err, "cause", None)
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        raise
    return out
