"""What the benchmark scripts share: the repository on ``sys.path``, ``train.py`` runs given as dicts of
flags (run in parallel, results read back), batching, Markdown tables and figures with Chinese text.

Each script imports this module before the project's own (``modeling``, ``data_scripts``), since a
script run as ``python benchmarks/<script>.py`` has only ``benchmarks/`` on its path."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
RUNS_DIR = ROOT / "benchmarks" / "runs"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Flags = dict[str, object]  # train.py arguments by name: {"dataset": "msra", "num_train_epochs": 8}
DEFAULT_SEED = 42  # train.py's --seed (TrainingArguments'): its runs keep the bare name


def run_name(base: str, seed: int) -> str:
    """``base`` for the default seed, ``base-sSEED`` for the others."""
    return base if seed == DEFAULT_SEED else f"{base}-s{seed}"


def split_run_name(name: str) -> tuple[str, int]:
    """``run_name``'s inverse: ``"crf-msra-s43"`` -> ``("crf-msra", 43)``, ``"crf-msra"`` -> ``("crf-msra", 42)``."""
    base, _, last = name.rpartition("-s")
    return (base, int(last)) if base and last.isdigit() else (name, DEFAULT_SEED)


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


# train.py's defaults for the char BiLSTM before issue 45 made its input features and recipe a preset (the sample
# corpus kept its own lr preset, 2e-3). Every run here names the encoder it was measured with: a run's flags go on
# top of these, so the runs defined before that change train as they did and their figures keep their commands.
EARLIER_DEFAULTS: Flags = {
    "use_bigrams": False,
    "use_softword": False,
    "use_word_sets": False,
    "hidden_dropout_prob": 0.1,
    "learning_rate": 1e-3,
}


def train_argv(flags: Flags) -> list[str]:
    """``train.py``'s arguments for a benchmark run: ``flags`` over ``EARLIER_DEFAULTS``."""
    earlier = dict(EARLIER_DEFAULTS)
    if flags.get("dataset", "sample") == "sample":
        earlier["learning_rate"] = 2e-3
    return argv({**earlier, **flags})


def argv(flags: Flags) -> list[str]:
    """``{"dataset": "msra", "num_train_epochs": 8}`` -> ``["--dataset", "msra", "--num_train_epochs", "8"]``;
    later keys of a merged dict (``{**base, "num_train_epochs": 16}``) override earlier ones."""
    out = []
    for name, value in flags.items():
        out += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return out


# the encoder's input features of issue 45 (char bigrams, softword, jieba word sets), each alone and together, and
# the training recipe that benchmarks/encoder.py measured on MSRA (dropout 0.5 on the embeddings and the BiLSTM's
# output, lr 2e-3)
ENCODER_FEATURES = {"use_bigrams": True, "use_softword": True, "use_word_sets": True}
FEATURE_SETS: dict[str, Flags] = {
    "bigrams": {"use_bigrams": True},
    "softword": {"use_softword": True},
    "wordsets": {"use_word_sets": True},
    "bigrams_softword": {"use_bigrams": True, "use_softword": True},
    "features": ENCODER_FEATURES,
}
ENCODER_RECIPE = {"hidden_dropout_prob": 0.5, "learning_rate": 2e-3}
FEATURE_PROJECTIONS = (64, 128)  # train.py --feature_projection_size: narrower BiLSTM inputs, timed and scored
PLAIN = {"num_memory": 0, "use_self_attention": False}
SAMPLE_MODELS: dict[
    str, Flags
] = {  # the speed benchmarks' models, trained on the embedded sample when no folder is given
    "plain": PLAIN,
    "memory": {},  # train.py's default: the memory network, entity retrieval
    "seq2seq": {"model_type": "seq2seq"},
    # the plain tagger with each set of input features, and the memory network with all three: what they cost
    **{f"plain_{name}": {**PLAIN, **flags} for name, flags in FEATURE_SETS.items()},
    **{
        f"plain_features_p{k}": {**PLAIN, **ENCODER_FEATURES, "feature_projection_size": k}
        for k in FEATURE_PROJECTIONS
    },
    "memory_features": dict(ENCODER_FEATURES),
}


def sample_model_folder(name: str, given: dict[str, str]) -> Path:
    """``given[name]`` if the user named a folder, else the ``SAMPLE_MODELS[name]`` model (trained into ``runs/``
    once)."""
    if name in given:
        return Path(given[name])
    folder = RUNS_DIR / f"speed-sample-{name}"
    if not (folder / "model.safetensors").exists():
        print(f"training the sample {name} model into {folder} ...", flush=True)
        cmd = [
            sys.executable,
            "train.py",
            *train_argv(SAMPLE_MODELS[name]),
            "--output_dir",
            str(folder),
            "--disable_tqdm",
            "true",
        ]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"training the sample {name} model failed:\n{proc.stderr[-3000:]}")
    return folder


def flags_from_argv(extra: list[str]) -> Flags:
    """``["--num_train_epochs", "1"]`` (a script's extra train.py arguments after ``--``) -> ``{"num_train_epochs":
    "1"}``."""
    if len(extra) % 2 or not all(a.startswith("--") for a in extra[::2]):
        raise SystemExit(f"extra train.py arguments must be --name value pairs, got: {' '.join(extra)}")
    return {name[2:]: value for name, value in zip(extra[::2], extra[1::2])}


def pad(rows: list[list[int]], value: int):
    """Rows of different lengths -> one ``torch.LongTensor`` padded with ``value``."""
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


CJK_FONTS = (
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "SimHei",
    "Microsoft YaHei",
)


def use_cjk_font() -> str:
    """Make matplotlib draw Chinese; exit with the package to install when no such font exists."""
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    for rescan in (False, True):  # a font installed after matplotlib cached its list needs a rescan
        if rescan:
            font_manager.fontManager = font_manager._load_fontmanager(try_read_cache=False)
        installed = {f.name for f in font_manager.fontManager.ttflist}
        for name in CJK_FONTS:
            if name in installed:
                plt.rcParams["font.sans-serif"] = [name, *plt.rcParams["font.sans-serif"]]
                plt.rcParams["axes.unicode_minus"] = False
                return name
    sys.exit(
        f"no font with Chinese characters found (looked for {', '.join(CJK_FONTS)}): apt-get install "
        "fonts-wqy-microhei"
    )


def save_figure(fig, output: str, what: str) -> None:
    """Lay out ``fig``, write it to ``output`` (creating its folder) and say so."""
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=130)
    print(f"wrote {output} ({what})")


def short_tag(tag: str) -> str:
    """``B-government`` -> ``B-gov``: tick labels stay readable."""
    return tag if tag == "O" else f"{tag.split('-', 1)[0]}-{tag.split('-', 1)[1][:3]}"


def run_one(name: str, args: list[str], threads: int) -> float:
    """``python train.py ARGS --output_dir benchmarks/runs/NAME``, logged to ``train.log``; wall seconds, over
    every segment of a resumed run.

    A folder that already holds a checkpoint (a run stopped at a session's end) resumes from its last one."""
    out = RUNS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    resume = any(out.glob("checkpoint-*/trainer_state.json"))
    cmd = [sys.executable, "train.py", *args, "--output_dir", str(out)]
    if resume:
        cmd += ["--resume_from_checkpoint", "last"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.time()
    with open(out / "train.log", "a" if resume else "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    elapsed = time.time() - start
    wall = out / "wall_seconds.txt"
    if resume and wall.exists():  # the segments before the stop count too
        elapsed += float(wall.read_text())
    wall.write_text(f"{elapsed:.0f}\n")
    return elapsed


def run_all(runs: dict[str, Flags], parallel: int, desc: str) -> None:
    """Run several configurations, ``parallel`` at a time, each with ``cores // parallel`` threads.

    A run whose folder already has ``all_results.json`` is finished and skipped (its log and
    results are kept); delete the folder to run it again."""
    finished = [name for name in runs if (RUNS_DIR / name / "all_results.json").exists()]
    if finished:
        print(f"skipped, already finished (delete the folder to rerun): {', '.join(finished)}")
        runs = {name: args for name, args in runs.items() if name not in finished}
    threads = max(1, (os.cpu_count() or 2) // parallel)
    with ThreadPoolExecutor(parallel) as pool, tqdm(total=len(runs), desc=desc, unit="run") as bar:
        futures = [pool.submit(run_one, name, train_argv(flags), threads) for name, flags in runs.items()]
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
        res["best_epoch"] = next(
            (h["epoch"] for h in st["log_history"] if h.get("eval_f1") == st.get("best_metric")), None
        )
    return res
