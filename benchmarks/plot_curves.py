#!/usr/bin/env python
"""Plot dev F1 and training loss per epoch of finished train.py runs (from their trainer_state.json).

    python benchmarks/plot_curves.py benchmarks/runs/cluener benchmarks/runs/cluener-tencent \\
        -o benchmarks/cluener_curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def history(run: Path) -> tuple[list[float], list[float], list[float], list[float]]:
    state = json.loads((run / "trainer_state.json").read_text())
    ev = [(h["epoch"], h["eval_f1"]) for h in state["log_history"] if "eval_f1" in h]
    tr = [(h["epoch"], h["loss"]) for h in state["log_history"] if "loss" in h]
    return [e for e, _ in ev], [100 * f for _, f in ev], [e for e, _ in tr], [l for _, l in tr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="output folders of train.py runs")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/curves.png"))
    parser.add_argument("--title", default="char BiLSTM-CRF")
    parser.add_argument(
        "--no-loss",
        action="store_true",
        help="dev F1 only (runs whose losses are not on one scale, e.g. CRF and seq2seq)",
    )
    args = parser.parse_args()
    if args.no_loss:
        fig, ax_f1 = plt.subplots(figsize=(6.5, 4))
        axes = [ax_f1]
    else:
        fig, (ax_f1, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
        axes = [ax_f1, ax_loss]
        ax_loss.set(xlabel="epoch", ylabel="training loss (CRF NLL / sentence)", title="training loss")
    for run in args.runs:
        ev_x, f1, tr_x, loss = history(run)
        ax_f1.plot(ev_x, f1, marker="o", ms=3, label=run.name)
        if not args.no_loss:
            ax_loss.plot(tr_x, loss, marker="o", ms=3, label=run.name)
    fig.suptitle(args.title)  # one title over both panels: a long one does not run into the other panel's
    ax_f1.set(xlabel="epoch", ylabel="dev entity F1 (%)", title="dev F1")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
