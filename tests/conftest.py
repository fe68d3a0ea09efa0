"""Shared fixtures: paths to ../shared/data, small trained models, and a helper that runs train.py."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: nothing in the suite may download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
from hypothesis import HealthCheck, settings
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_scripts.features import BERT_VOCAB, default_data_dir  # noqa: E402

DATA = default_data_dir()

# property-based tests (test_fuzz.py): seeded; "suite" runs in the test suite, "long" is benchmarks/fuzz.py's
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
_FUZZ = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": _SLOW_IS_FINE,
}
settings.register_profile("suite", max_examples=60, **_FUZZ)
settings.register_profile("long", max_examples=10_000, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


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
    config = BertConfig(
        vocab_size=21128,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    BertTokenizerFast(vocab=str(data_dir / BERT_VOCAB)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def memory_run(tmp_path_factory):
    """A small memory network (n=2, pos_edit) trained by train.py on the embedded sample: (folder, results). Its
    BiLSTM reads train.py's default input features; dropout 0.1, as six epochs of a small model need. Shared by
    the memory-model, pipeline, push_to_hub and Space tests."""
    out = tmp_path_factory.mktemp("memory")
    results = run_train(
        [
            "--output_dir", str(out), "--num_memory", "2", "--memory_method", "pos_edit",
            "--num_train_epochs", "6", "--lstm_hidden_size", "64", "--hidden_dropout_prob", "0.1",
            "--save_strategy", "no", "--load_best_model_at_end", "false",
        ]
    )  # fmt: skip
    return out, results


@pytest.fixture(scope="session")
def swap_run(tmp_path_factory):
    """A small memory network (n=2, entity retrieval) trained with the entity swap, so it reads entities it never
    saw from its memories: the model of the Space tests and of teaching by name. (folder, results)."""
    out = tmp_path_factory.mktemp("swap")
    results = run_train(
        [
            "--output_dir", str(out), "--num_memory", "2", "--memory_method", "entity",
            "--memory_entity_swap_prob", "0.5", "--num_train_epochs", "10", "--lstm_hidden_size", "64",
            "--hidden_dropout_prob", "0.1", "--save_strategy", "no", "--load_best_model_at_end", "false",
        ]
    )  # fmt: skip
    return out, results


@pytest.fixture(scope="session")
def lexicon_run(tmp_path_factory):
    """A small memory network (n=2, entity) whose BiLSTM reads bigrams, softword and word sets from jieba's
    dictionary, trained by train.py on the embedded sample: (folder, results)."""
    out = tmp_path_factory.mktemp("lexicon")
    results = run_train(
        [
            "--output_dir", str(out), "--num_memory", "2", "--lstm_hidden_size", "64", "--use_bigrams", "true",
            "--use_softword", "true", "--use_word_sets", "true", "--num_train_epochs", "6", "--save_strategy", "no",
            "--load_best_model_at_end", "false",
        ]
    )  # fmt: skip
    return out, results


@pytest.fixture(scope="session")
def seq2seq_run(tmp_path_factory):
    """A small Seq2SeqAttnTagger trained by train.py on the embedded sample: (folder, results)."""
    out = tmp_path_factory.mktemp("seq2seq-sample")
    results = run_train(
        [
            "--output_dir", str(out), "--model_type", "seq2seq", "--num_train_epochs", "4",
            "--learning_rate", "5e-3", "--save_strategy", "no", "--load_best_model_at_end", "false",
        ]
    )  # fmt: skip
    return out, results


def run_train(
    args: list[str],
    cwd: Path = ROOT,
    launcher: list[str] | None = None,
    threads: int | None = None,
    timeout: int = 600,
) -> dict:
    """Run train.py with ``args``, offline, ``threads`` torch threads per process; return its
    all_results.json plus ``_stdout`` / ``_stderr`` (fail with the log on error).

    Without ``launcher`` it runs in this process: ``train.main()`` with ``sys.argv`` patched, as
    transformers' own example tests run run_ner.py. That saves the ~7 s a fresh interpreter spends
    importing torch, transformers and datasets; the runs that must be separate processes (torchrun,
    loading a saved folder fresh) use a ``launcher`` or their own subprocess."""
    argv = [str(ROOT / "train.py"), *args, "--disable_tqdm", "true"]
    if launcher:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": str(threads) if threads else os.environ.get("OMP_NUM_THREADS", "2"),
        }
        proc = subprocess.run([*launcher, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        stdout, stderr, error = proc.stdout, proc.stderr, f"exit code {proc.returncode}" if proc.returncode else None
    else:
        stdout, stderr, error = _run_train_here(argv, cwd, threads)
    if error:
        pytest.fail(f"train.py failed ({error}):\n{stdout[-3000:]}\n{stderr[-5000:]}")
    out = (
        Path(cwd, args[args.index("--output_dir") + 1])
        if "--output_dir" in args
        else cwd / "outputs" / "sample-memory"
    )  # train.py's default
    results = json.loads((out / "all_results.json").read_text())
    results["_stdout"], results["_stderr"] = stdout, stderr
    return results


def _run_train_here(argv: list[str], cwd: Path, threads: int | None) -> tuple[str, str, str | None]:
    """``train.main()`` in this process; its prints, its log records and the error, if any."""
    import train

    stdout, stderr = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s - %(name)s - %(message)s"))
    root, level, torch_threads = logging.getLogger(), logging.getLogger().level, torch.get_num_threads()
    error = None
    root.addHandler(handler)
    root.setLevel(
        logging.INFO
    )  # what train.py's logging.basicConfig sets in a fresh process (here pytest's handlers make it a no-op)
    try:
        if threads:
            torch.set_num_threads(threads)
        with (
            mock.patch.object(sys, "argv", argv),
            contextlib.chdir(cwd),
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
        ):
            train.main()
    except SystemExit as exc:  # argparse's errors and train.py's own stops
        error = f"exit {exc.code}" if exc.code else None
        stderr.write(str(exc.code or ""))
    except Exception:  # noqa: BLE001  (reported with the run's log, as a failed subprocess would be)
        error = "exception"
        stderr.write(traceback.format_exc())
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        torch.set_num_threads(torch_threads)
    return stdout.getvalue(), stderr.getvalue(), error


def run_fresh_process(script: str, *args: str, cwd: Path, timeout: int = 300) -> list[str]:
    """``python -c script args`` in a new interpreter, offline, in ``cwd`` (outside the repository) and
    without this checkout on ``PYTHONPATH``, so only the code saved in a model folder can be imported;
    its stdout lines (fails with its stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(Path(cwd) / "hf"))
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def torchless_python(tmp_path: Path) -> list[str]:
    """A command prefix that runs this interpreter with every installed package but torch (and what needs it):
    ``import torch`` fails there as on a machine without it."""
    import site

    folder = tmp_path / "site-without-torch"
    if not folder.exists():
        folder.mkdir(parents=True)
        for entry in Path(site.getsitepackages()[0]).iterdir():
            if not entry.name.lower().startswith(("torch", "functorch", "pytorch_crf")):
                (folder / entry.name).symlink_to(entry)
    return [sys.executable, "-S", "-c", f"import site, sys; site.addsitedir({str(folder)!r}); sys.argv.pop(0); "
            "exec(open(sys.argv[0]).read())"]  # fmt: skip


def load_pipeline(folder, cls):
    """The ``chinese-ner`` pipeline on a saved folder, built in this process (no remote code)."""
    from modeling import ChineseNERPipeline

    return ChineseNERPipeline(
        model=cls.from_pretrained(folder).eval(), tokenizer=BertTokenizerFast.from_pretrained(folder)
    )


def write_cluener_slice(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` lines of a CLUENER file (a small slice of the real data, in a temp dir)."""
    lines = src.read_text(encoding="utf-8").splitlines()[:n]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


# a test that needs a model trained here (by train.py or a fixture's training run; the tiny BERT is one), or the
# whole of a real corpus, is in the slow tier, whether it names the fixture or a parameter names it for
# request.getfixturevalue; the tests that train or start processes themselves say so with @pytest.mark.slow
SLOW_FIXTURES = {
    "memory_run", "swap_run", "seq2seq_run", "tiny_bert_dir", "memory_ner", "seq2seq_ner", "overfit_bilstm",
    "overfit_bert", "seq2seq_bilstm", "seq2seq_bert", "lexicon_run",
}  # fmt: skip
WHOLE_CORPUS_TESTS = {"test_msra_counts", "test_peoples_daily_split"}  # read all of MSRA / People's Daily


def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {}).values()
        named = set(getattr(item, "fixturenames", ())) | {p for p in params if isinstance(p, str)}
        if SLOW_FIXTURES & named or item.originalname in WHOLE_CORPUS_TESTS:
            item.add_marker(pytest.mark.slow)
