"""Shared fixtures: paths to ../shared/data and helpers that run train.py in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_scripts.features import BERT_VOCAB, default_data_dir  # noqa: E402

DATA = default_data_dir()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``; required in CI, skipped locally when absent."""
    if not (DATA / "cluener" / "train.json").exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {DATA}")
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def tiny_bert_dir(data_dir, tmp_path_factory):
    """A tiny randomly initialised BERT saved to a temp dir: stands in for hfl/chinese-roberta-wwm-ext."""
    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=21128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_position_embeddings=128)
    BertModel(config).save_pretrained(path)
    BertTokenizerFast(vocab=str(data_dir / BERT_VOCAB)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def memory_run(tmp_path_factory):
    """A small memory network (n=2, pos_edit) trained by train.py on the embedded sample: (folder, results).
    Shared by the memory-model, pipeline, push_to_hub and Space tests."""
    out = tmp_path_factory.mktemp("memory")
    results = run_train(["--output_dir", str(out), "--num_memory", "2", "--memory_method", "pos_edit", "--num_train_epochs", "6",
                         "--lstm_hidden_size", "64", "--save_strategy", "no", "--load_best_model_at_end", "false"])
    return out, results


@pytest.fixture(scope="session")
def seq2seq_run(tmp_path_factory):
    """A small Seq2SeqAttnTagger trained by train.py on the embedded sample: (folder, results)."""
    out = tmp_path_factory.mktemp("seq2seq-sample")
    results = run_train(["--output_dir", str(out), "--model_type", "seq2seq", "--num_train_epochs", "4", "--learning_rate", "5e-3",
                         "--save_strategy", "no", "--load_best_model_at_end", "false"])
    return out, results


def run_train(args: list[str], cwd: Path = ROOT, timeout: int = 600, launcher: list[str] | None = None, threads: int | None = None) -> dict:
    """Run train.py with ``args`` offline (``threads`` torch threads per process); return its all_results.json
    (fail with the log on error)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": str(threads) if threads else os.environ.get("OMP_NUM_THREADS", "2")}
    cmd = (launcher or [sys.executable]) + [str(ROOT / "train.py"), *args, "--disable_tqdm", "true"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    out = Path(args[args.index("--output_dir") + 1]) if "--output_dir" in args else cwd / "outputs" / "sample-bilstm"  # train.py's default
    results = json.loads((out / "all_results.json").read_text())
    results["_stdout"], results["_stderr"] = proc.stdout, proc.stderr
    return results


def load_pipeline(folder, cls):
    """The ``chinese-ner`` pipeline on a saved folder, built in this process (no remote code)."""
    from modeling import ChineseNERPipeline

    return ChineseNERPipeline(model=cls.from_pretrained(folder).eval(), tokenizer=BertTokenizerFast.from_pretrained(folder))


def write_cluener_slice(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` lines of a CLUENER file (a small slice of the real data, in a temp dir)."""
    lines = src.read_text(encoding="utf-8").splitlines()[:n]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst
