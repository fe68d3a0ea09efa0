"""predict.py: every input format gives the pipeline's entities, an interrupted run resumes to exactly the rows of an
uninterrupted one, rows that are not text are reported with file and line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, load_pipeline

sys.path.insert(0, str(ROOT))

from data_scripts.batch_predict import ShardStore, iter_shards  # noqa: E402
from data_scripts.errors import UserError  # noqa: E402
from data_scripts.text_inputs import expand_inputs, iter_rows  # noqa: E402
from modeling import MemoryNetForTokenClassification  # noqa: E402

TEXTS = [
    "林晓梅是青禾科技的首席执行官，她昨天在杭州市西湖区发布了新产品。",
    "",
    "市教育局宣布，今年秋季起全市中小学将推广午间阅读。",
    "周末我们去了西湖，又顺路逛了灵隐寺。 ",
    "《山河笔记》的作者周明远将在上海书展签售。" * 6,  # longer than the model's window
    "iPhone 15 Pro 在 2024 年 9 月发布，价格 7999 元。",
]


def write_inputs(folder) -> dict[str, str]:
    """The same texts in every input format."""
    from datasets import Dataset

    folder.mkdir(parents=True, exist_ok=True)
    paths = {fmt: str(folder / f"texts.{fmt}") for fmt in ("txt", "jsonl", "json", "csv", "parquet")}
    with open(paths["txt"], "w", encoding="utf-8") as f:
        f.write("\n".join(TEXTS) + "\n")
    with open(paths["jsonl"], "w", encoding="utf-8") as f:
        for k, text in enumerate(TEXTS):
            f.write(json.dumps({"id": k, "text": text}, ensure_ascii=False) + "\n")
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump([{"text": t} for t in TEXTS], f, ensure_ascii=False, indent=1)
    with open(paths["csv"], "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([k, t] for k, t in enumerate(TEXTS))
    pq.write_table(pa.table({"text": TEXTS}), paths["parquet"])
    paths["datasets"] = str(folder / "texts_ds")
    Dataset.from_dict({"text": TEXTS}).save_to_disk(paths["datasets"])
    return paths


def predict(*args: str) -> None:
    """predict.py's main in this process (its exit status must be 0)."""
    import predict as command

    argv = sys.argv
    sys.argv = ["predict.py", *args]
    try:
        assert command.main() == 0
    finally:
        sys.argv = argv


def read_output(path) -> list[dict]:
    if str(path).endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.fixture(scope="module")
def expected(memory_run):
    ner = load_pipeline(memory_run[0], MemoryNetForTokenClassification)
    return [
        [{k: e[k] for k in ("entity_group", "score", "word", "start", "end")} for e in ents] for ents in ner(TEXTS)
    ]


def same_entities(got: list[dict], want: list[dict]) -> bool:
    """Equal entities, scores to float32 precision (Parquet stores them as float32)."""
    return len(got) == len(want) and all(
        {k: v for k, v in g.items() if k != "score"} == {k: v for k, v in w.items() if k != "score"}
        and abs(g["score"] - w["score"]) < 1e-6
        for g, w in zip(got, want)
    )


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "json", "csv", "parquet", "datasets"])
@pytest.mark.parametrize("out", ["jsonl", "parquet"])
def test_every_input_format_gives_the_pipelines_entities(memory_run, expected, tmp_path, fmt, out):
    paths = write_inputs(tmp_path / "in")
    output = tmp_path / f"entities.{out}"
    predict("--model_name_or_path", str(memory_run[0]), "--input", paths[fmt], "--output", str(output),
            "--shard_size", "4")  # fmt: skip
    rows = read_output(output)
    assert [(r["file"], r["row"]) for r in rows] == [(paths[fmt], k) for k in range(len(TEXTS))]
    for row, want in zip(rows, expected):
        assert same_entities(row["entities"], want)
    assert not os.path.exists(f"{output}.parts")  # merged, parts removed


def test_several_inputs_and_a_glob_come_out_in_order_with_memories(memory_run, expected, tmp_path):
    paths = write_inputs(tmp_path / "in")
    output = tmp_path / "entities.parquet"
    predict("--model_name_or_path", str(memory_run[0]), "--input", str(tmp_path / "in" / "*.jsonl"), paths["csv"],
            "--output", str(output), "--return_memories", "--shard_size", "5")  # fmt: skip
    rows = read_output(output)
    assert [(r["file"], r["row"]) for r in rows] == [(p, k) for p in (paths["jsonl"], paths["csv"]) for k in range(6)]
    assert all(same_entities(r["entities"], w) for r, w in zip(rows, expected + expected))
    windows = rows[0]["memories"]
    assert len(windows) == 1 and len(windows[0]["memories"]) == 2  # the test model reads 2 memories a window
    assert rows[1]["memories"] == []  # an empty text has no window


def test_rows_that_are_not_text_are_reported_with_file_and_line(memory_run, tmp_path, capsys):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"text": "市教育局宣布。"}\n\n{"text": 5}\n{broken\n{"body": "x"}\n{"text": "灵隐寺"}\n', encoding="utf-8"
    )
    output = tmp_path / "out.jsonl"
    predict("--model_name_or_path", str(memory_run[0]), "--input", str(path), "--output", str(output))
    report = capsys.readouterr().out
    assert "3 rows are not text and were skipped" in report
    assert f"{path}:3: 'text' is int, not a string" in report
    assert f"{path}:4: invalid JSON" in report
    assert f"{path}:5: no 'text' field (fields: body)" in report
    assert "5 rows: 2 texts" in report
    assert [(r["row"], r["file"]) for r in read_output(output)] == [(0, str(path)), (4, str(path))]
    with pytest.raises(UserError, match=rf"{path}:3: 'text' is int, not a string \(--on_error stop"):
        predict("--model_name_or_path", str(memory_run[0]), "--input", str(path), "--output",
                str(tmp_path / "stop.jsonl"), "--on_error", "stop")  # fmt: skip


@pytest.mark.slow
def test_a_bad_input_is_one_line_and_status_2(memory_run, tmp_path):
    (tmp_path / "a.docx").write_bytes(b"x")
    (tmp_path / "b.csv").write_text("id,body\n1,x\n", encoding="utf-8")
    (tmp_path / "c.txt").write_bytes("好\n".encode() + b"\xff\xfe\n")
    cases = [
        (["--input", str(tmp_path / "a.docx")], "unknown file type '.docx'"),
        (["--input", str(tmp_path / "nothing*.txt")], "matches no file"),
        (["--input", str(tmp_path / "b.csv")], "b.csv:1: no 'text' column (columns: id, body)"),
        (["--input", str(tmp_path / "c.txt")], "c.txt:2: not UTF-8 text"),
        (["--input", str(tmp_path / "c.txt"), "--output", str(tmp_path / "o.csv")], "cannot tell the format"),
        (
            ["--input", str(tmp_path / "c.txt"), "--model_name_or_path", str(tmp_path / "no-model")],
            "no such model folder",
        ),
    ]
    for k, (args, message) in enumerate(cases):
        args = ["--model_name_or_path", str(memory_run[0]), "--output", str(tmp_path / f"o{k}.jsonl"), *args]
        proc = subprocess.run([sys.executable, "predict.py", *args], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_shards_are_fixed_by_position_and_done_ones_are_read_past(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("".join(f"{k}\n" for k in range(10)), encoding="utf-8")
    shards = list(iter_shards([str(path)], "text", 4))
    assert [(s.name, [r.text for r in s.rows]) for s in shards] == [
        ("part-00000-000000", ["0", "1", "2", "3"]),
        ("part-00000-000001", ["4", "5", "6", "7"]),
        ("part-00000-000002", ["8", "9"]),
    ]
    resumed = list(iter_shards([str(path)], "text", 4, skip={"part-00000-000001"}))
    assert [s.name for s in resumed] == ["part-00000-000000", "part-00000-000002"]
    assert [r.line for r in iter_rows(str(path))][:3] == [1, 2, 3]
    with pytest.raises(UserError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.parquet")])


@pytest.mark.slow
def test_a_killed_run_resumes_to_exactly_the_rows_of_an_uninterrupted_one(memory_run, tmp_path):
    path = tmp_path / "many.txt"
    path.write_text("\n".join(f"{TEXTS[k % 4]}第{k}行。" for k in range(600)) + "\n", encoding="utf-8")
    model = str(memory_run[0])
    args = [sys.executable, "predict.py", "--model_name_or_path", model, "--input", str(path), "--shard_size", "20",
            "--threads_per_proc", "1", "--output"]  # fmt: skip
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    assert subprocess.run([*args, str(whole)], cwd=ROOT, capture_output=True, timeout=600).returncode == 0
    args.append(str(resumed))
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "resumed.jsonl.parts"
    deadline = time.time() + 240
    while len(list(parts.glob("part-*.jsonl"))) < 5:
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("part-*.jsonl")))
    assert 5 <= done < 30 and not resumed.exists()
    (parts / "part-00000-000029.jsonl.tmp").write_text('{"half a shard', encoding="utf-8")  # a write cut short
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resuming: {done} shards" in out.stderr
    assert f"({done} of 30 shards done by an earlier run)" in out.stdout
    assert resumed.read_text(encoding="utf-8") == whole.read_text(encoding="utf-8")


def test_an_unfinished_run_with_other_arguments_is_not_mixed_in(memory_run, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("市教育局宣布。\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    arguments = ["--model_name_or_path", str(memory_run[0]), "--input", str(path), "--output", str(output)]
    import predict as command

    args = command.PredictArguments(**{"model_name_or_path": str(memory_run[0]), "input": [str(path)],
                                       "output": str(output), "shard_size": 7})  # fmt: skip
    ShardStore(str(output), "jsonl", args.run_arguments([str(path)])).open(overwrite=False)  # a run that stopped
    with pytest.raises(UserError, match=r"holds an unfinished run with other arguments \(shard_size\)"):
        predict(*arguments)
    predict(*arguments, "--overwrite")
    assert [r["row"] for r in read_output(output)] == [0]


@pytest.mark.slow
def test_the_ray_engine_in_local_mode_gives_the_in_process_output(memory_run, expected, tmp_path):
    ray = pytest.importorskip("ray")
    paths = write_inputs(tmp_path / "in")
    bad = tmp_path / "in" / "bad.jsonl"
    bad.write_text('{"text": "市教育局宣布。"}\n{oops\n', encoding="utf-8")
    model = str(memory_run[0])
    local, distributed = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    inputs = [paths["txt"], paths["parquet"], str(bad)]
    predict("--model_name_or_path", model, "--input", *inputs, "--output", str(local), "--shard_size", "4")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        predict("--model_name_or_path", model, "--input", *inputs, "--output", str(distributed), "--shard_size", "4",
                "--engine", "ray", "--num_proc", "2", "--threads_per_proc", "1")  # fmt: skip
        with pytest.raises(UserError, match=rf"{bad}:2: invalid JSON .*--on_error stop"):
            predict("--model_name_or_path", model, "--input", str(bad), "--output", str(tmp_path / "stop.jsonl"),
                    "--engine", "ray", "--on_error", "stop", "--num_proc", "1", "--threads_per_proc", "1")  # fmt: skip
    finally:
        ray.shutdown()
    got, want = read_output(distributed), read_output(local)
    assert [(r["file"], r["row"]) for r in got] == [(r["file"], r["row"]) for r in want]
    assert len(got) == 2 * len(TEXTS) + 1
    assert all(same_entities(g["entities"], w["entities"]) for g, w in zip(got, want))


@pytest.mark.slow
def test_the_onnx_backend_gives_the_same_rows(memory_run, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(memory_run[0], folder)
    MemoryNetForTokenClassification.from_pretrained(folder).eval().export_onnx(folder / "onnx")
    paths = write_inputs(tmp_path / "in")
    torch_out, onnx_out = tmp_path / "torch.jsonl", tmp_path / "onnx.jsonl"
    predict("--model_name_or_path", str(folder), "--input", paths["jsonl"], "--output", str(torch_out))
    predict("--model_name_or_path", str(folder), "--input", paths["jsonl"], "--output", str(onnx_out),
            "--backend", "onnx")  # fmt: skip
    got, want = read_output(onnx_out), read_output(torch_out)
    assert [(r["file"], r["row"]) for r in got] == [(r["file"], r["row"]) for r in want]
    assert all(same_entities(g["entities"], w["entities"]) for g, w in zip(got, want))
    with pytest.raises(UserError, match="returns no memories"):
        predict("--model_name_or_path", str(folder), "--input", paths["txt"], "--output", str(tmp_path / "m.jsonl"),
                "--backend", "onnx", "--return_memories")  # fmt: skip
