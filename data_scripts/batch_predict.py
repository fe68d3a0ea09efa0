"""Tagging files with a saved model, resumably (``predict.py``).

The input rows (:mod:`.text_inputs`) are cut into shards of ``shard_size`` rows, numbered by input file and
position, so a shard is the same rows on every run. Each shard is tagged and written on its own into
``<output>.parts/`` (the rows' entities, then a ``.meta.json`` of counts and the rows that were not text),
atomically: a shard's data file appears under its final name only once it is complete, and it is the mark that
the shard is done. A run started again with the same arguments skips the shards that are done, so an interrupted
run loses at most the shards it was writing. When every shard is done they are concatenated, in input order, into
the output file, and the parts folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, NamedTuple

from .errors import UserError
from .text_inputs import Row, iter_rows

OUTPUT_FORMATS = ("jsonl", "parquet")
ON_ERROR = ("skip", "stop")
ENTITY_FIELDS = ("entity_group", "score", "word", "start", "end")


class Shard(NamedTuple):
    """Rows ``[chunk * shard_size, (chunk + 1) * shard_size)`` of input file ``file_index``."""

    file_index: int
    chunk: int
    rows: list[Row]

    @property
    def name(self) -> str:
        return f"part-{self.file_index:05d}-{self.chunk:06d}"


def iter_shards(inputs: list[str], text_column: str, shard_size: int, skip: set[str] = frozenset()) -> Iterator[Shard]:
    """The shards of ``inputs`` in order; a shard named in ``skip`` is read past (its rows are not kept)."""
    for file_index, path in enumerate(inputs):
        yield from file_shards(file_index, path, text_column, shard_size, skip)


def file_shards(file_index: int, path: str, text_column: str, shard_size: int, skip: set[str]) -> Iterator[Shard]:
    """The shards of one input, ``file_index`` of the run's inputs."""
    rows: list[Row] = []
    chunk = 0
    for row in iter_rows(path, text_column):
        if Shard(file_index, chunk, []).name not in skip:
            rows.append(row)
        if row.row + 1 == (chunk + 1) * shard_size:
            if rows:
                yield Shard(file_index, chunk, rows)
            rows, chunk = [], chunk + 1
    if rows:
        yield Shard(file_index, chunk, rows)


def output_format(output: str, given: str | None) -> str:
    fmt = given or Path(output).suffix.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise UserError(
            f"--output {output!r}: cannot tell the format from its suffix; name a .jsonl or .parquet file or pass "
            f"--output_format ({' / '.join(OUTPUT_FORMATS)})"
        )
    return fmt


def parquet_schema(return_memories: bool):
    import pyarrow as pa

    entity = pa.struct(
        [("entity_group", pa.string()), ("score", pa.float32()), ("word", pa.string()), ("start", pa.int32()),
         ("end", pa.int32())]
    )  # fmt: skip
    fields = [("file", pa.string()), ("row", pa.int64()), ("entities", pa.list_(entity))]
    if return_memories:
        span = pa.struct(
            [("entity_group", pa.string()), ("word", pa.string()), ("start", pa.int32()), ("end", pa.int32())]
        )
        memory = pa.struct([("bank_index", pa.int64()), ("text", pa.string()), ("entities", pa.list_(span))])
        window = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("memories", pa.list_(memory))])
        fields.append(("memories", pa.list_(window)))
    return pa.schema(fields)


class ShardStore:
    """``<output>.parts/``: the manifest of the run's arguments and the shards written so far."""

    def __init__(self, output: str, fmt: str, arguments: dict):
        self.output, self.fmt = Path(output), fmt
        self.folder = Path(f"{output}.parts")
        self.arguments = arguments
        self.fingerprint = hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()[:16]

    def open(self, overwrite: bool) -> set[str]:
        """Start or resume: the names of the shards already done. A parts folder of a run with other arguments is
        an error unless ``overwrite``."""
        manifest = self.folder / "manifest.json"
        if overwrite and self.folder.exists():
            shutil.rmtree(self.folder)
        if manifest.exists():
            previous = json.loads(manifest.read_text(encoding="utf-8"))
            if previous["fingerprint"] != self.fingerprint:
                changed = sorted(k for k in self.arguments if previous["arguments"].get(k) != self.arguments[k])
                raise UserError(
                    f"{self.folder} holds an unfinished run with other arguments ({', '.join(changed)}); run with "
                    "those arguments to resume it, or pass --overwrite to start again"
                )
            return {p.name[: -len(self.fmt) - 1] for p in self.folder.glob(f"part-*.{self.fmt}")}
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(manifest, json.dumps({"fingerprint": self.fingerprint, "arguments": self.arguments},
                                               ensure_ascii=False, indent=2))  # fmt: skip
        return set()

    def write(self, name: str, records: list[dict], meta: dict) -> None:
        """One shard: its meta first, then its data (the mark that it is done), each under its final name only
        when complete."""
        _write_atomically(self.folder / f"{name}.meta.json", json.dumps(meta, ensure_ascii=False))
        path = self.folder / f"{name}.{self.fmt}"
        tmp = path.with_name(path.name + ".tmp")
        if self.fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = parquet_schema("memories" in self.arguments["columns"])
            pq.write_table(pa.Table.from_pylist(records, schema=schema), tmp)
        os.replace(tmp, path)

    def metas(self) -> list[dict]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.folder.glob("part-*.meta.json"))]

    def merge(self) -> None:
        """Every shard, in input order, into the output file (streamed: one shard in memory at a time); then the
        parts folder goes."""
        parts = sorted(self.folder.glob(f"part-*.{self.fmt}"))
        tmp = self.output.with_name(self.output.name + ".tmp")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "jsonl":
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out)
        else:
            import pyarrow.parquet as pq

            with pq.ParquetWriter(tmp, parquet_schema("memories" in self.arguments["columns"])) as writer:
                for part in parts:
                    writer.write_table(pq.read_table(part))
        os.replace(tmp, self.output)
        shutil.rmtree(self.folder)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_pipeline(args):
    """The ``chinese-ner`` pipeline of the model, with the run's batch size and device (or its ONNX Runtime
    counterpart); ``args``: predict.py's ``PredictArguments``."""
    if args.backend == "onnx":
        from modeling.onnx_pipeline import OnnxChineseNER

        try:
            return OnnxChineseNER(args.model_name_or_path, threads=args.threads_per_proc, batch_size=args.batch_size)
        except (FileNotFoundError, ValueError) as err:
            raise UserError(f"--backend onnx: {err}") from None
    import torch
    from transformers import pipeline

    torch.set_num_threads(args.threads_per_proc)
    try:
        return pipeline(
            "chinese-ner", model=args.model_name_or_path, trust_remote_code=True, device=args.device,
            batch_size=args.batch_size,
        )  # fmt: skip
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load the model {args.model_name_or_path!r}: {str(err).splitlines()[0]}") from None


def tag_shard(ner, shard: Shard, return_memories: bool = False, **call_kwargs) -> tuple[list[dict], dict]:
    """The output records of a shard's text rows (``file``, ``row``, ``entities``, optionally ``memories``) and
    its meta: rows, characters, entities per type, the rows that were not text, seconds."""
    start = time.perf_counter()
    texts = [row.text for row in shard.rows if row.error is None]
    answers = ner(texts, return_memories=True, **call_kwargs) if return_memories and texts else None
    if answers is None:
        answers = [{"entities": e} for e in (ner(texts, **call_kwargs) if texts else [])]
    records, types = [], Counter()
    for row, answer in zip((row for row in shard.rows if row.error is None), answers):
        entities = [{k: e[k] for k in ENTITY_FIELDS} for e in answer["entities"]]
        types.update(e["entity_group"] for e in entities)
        record = {"file": row.file, "row": row.row, "entities": entities}
        if return_memories:
            record["memories"] = [
                {"start": w["start"], "end": w["end"],
                 "memories": [{k: m[k] for k in ("bank_index", "text", "entities")} for m in w["memories"]]}
                for w in answer["windows"]
            ]  # fmt: skip
        records.append(record)
    meta = {
        "shard": shard.name,
        "rows": len(shard.rows),
        "texts": len(texts),
        "characters": sum(map(len, texts)),
        "entities": dict(types),
        "errors": [f"{row.file}:{row.line}: {row.error}" for row in shard.rows if row.error is not None],
        "seconds": time.perf_counter() - start,
    }
    return records, meta


def first_error(shard: Shard) -> str | None:
    """``file:line: what is wrong`` of the shard's first row that is not a text, or None."""
    return next((f"{row.file}:{row.line}: {row.error}" for row in shard.rows if row.error is not None), None)


def summary(metas: list[dict], seconds: float, tagged_now: list[dict], load_seconds: float | None = None) -> str:
    """The end-of-run report: rows, characters, entities per type and the rows that were not text, of every shard;
    the rate of the shards tagged by this run (and, given the seconds that loading the model took, the rate once
    it was loaded)."""
    rows, texts, chars = (sum(m[k] for m in metas) for k in ("rows", "texts", "characters"))
    types = Counter()
    for m in metas:
        types.update(m["entities"])
    errors = [e for m in metas for e in m["errors"]]
    now_texts, now_chars = (sum(m[k] for m in tagged_now) for k in ("texts", "characters"))
    lines = [
        f"{rows:,} rows: {texts:,} texts, {chars:,} characters"
        + (
            f" ({len(metas) - len(tagged_now)} of {len(metas)} shards done by an earlier run)"
            if len(metas) > len(tagged_now)
            else ""
        ),
        f"{sum(types.values()):,} entities: " + (", ".join(f"{t} {n:,}" for t, n in types.most_common()) or "none"),
        f"this run: {now_texts:,} texts in {seconds:.1f} s, {now_texts / max(seconds, 1e-9):,.1f} texts/s, "
        f"{now_chars / max(seconds, 1e-9):,.0f} characters/s",
    ]
    if load_seconds is not None:
        tagging = max(seconds - load_seconds, 1e-9)
        lines.append(f"the model loaded in {load_seconds:.1f} s; then {now_chars / tagging:,.0f} characters/s")
    if errors:
        lines.append(f"{len(errors):,} rows are not text and were skipped (--on_error skip): " + "; ".join(errors[:5])
                     + (" ..." if len(errors) > 5 else ""))  # fmt: skip
    return "\n".join(lines)
