#!/usr/bin/env python
"""How good must the entity-type classifier be? Dev F1 of memory runs against the quality of the
query type sets their retrieval used, next to the baseline.

For each memory run under ``benchmarks/runs``, x is the micro F1 of the dev type sets retrieval
used (100 for ``gold_category``; the classifier's for ``category``; the classifier's blended with
gold for ``--oracle_type_share``) and y its dev entity F1. Runs of one setting (the name without
``-sN``) are averaged, with their spread as error bars. The baseline runs' mean is a horizontal
line, with the issue's targets (+1.5 over it, and 72.0). Prints the points as a table too.

    python benchmarks/plot_type_quality.py memory-category-s1 memory-category_oracle25-s1 \\
        memory-category_oracle50-s1 memory-category_oracle50-s2 memory-gold_category-s1 \\
        --baseline memory-baseline-s1 memory-baseline-s2 -o benchmarks/cluener_type_quality.png
"""

from __future__ import annotations

import argparse
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import results, save_figure  # noqa: E402


def retrieval_type_f1(res: dict) -> float:
    """Micro F1 (%) of the dev query type sets the run's retrieval used."""
    method = res["memory"]["method"]
    if method == "gold_category":
        return 100.0
    if "retrieval_types_micro" in res:  # --oracle_type_share
        return 100 * res["retrieval_types_micro"]["validation"]["f1"]
    if method == "category":
        return 100 * res["type_classifier_validation"]["micro"]["f1"]
    raise ValueError(f"a {method} run retrieves without query types: nothing to plot")


def finished(name: str) -> dict:
    res = results(name)
    if res is None:
        sys.exit(f"benchmarks/runs/{name} has no all_results.json: not a finished run")
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs", nargs="+", help="memory runs (category, oracle blends, gold_category) under benchmarks/runs/"
    )
    parser.add_argument(
        "--baseline", nargs="+", required=True, help="baseline runs (num_memory 0) of the same schedule"
    )
    parser.add_argument("-o", "--output", default="benchmarks/cluener_type_quality.png")
    args = parser.parse_args()

    base = [100 * finished(n)["validation_f1"] for n in args.baseline]
    settings: dict[str, list[tuple[float, float]]] = {}
    for name in args.runs:
        res = finished(name)
        settings.setdefault(name.rsplit("-s", 1)[0], []).append((retrieval_type_f1(res), 100 * res["validation_f1"]))
    base_mean = statistics.mean(base)
    rows = [
        "| setting | runs | dev type-set micro F1 used by retrieval | dev F1 (mean) | per run | vs baseline |",
        "|---|---|---|---|---|---|",
    ]
    points = []
    for setting, pts in sorted(settings.items(), key=lambda kv: statistics.mean(p[0] for p in kv[1])):
        x, y = statistics.mean(p[0] for p in pts), statistics.mean(p[1] for p in pts)
        points.append((setting, x, y, [p[1] for p in pts]))
        rows.append(
            f"| {setting} | {len(pts)} | {x:.2f} | **{y:.2f}** | {', '.join(f'{p[1]:.2f}' for p in pts)} | "
            f"{y - base_mean:+.2f} |"
        )
    rows.append(
        f"| baseline (no memory) | {len(base)} | – | **{base_mean:.2f}** | {', '.join(f'{b:.2f}' for b in base)} | – |"
    )
    print("\n".join(rows))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    spread = [[p[2] - min(p[3]) for p in points], [max(p[3]) - p[2] for p in points]]
    ax.errorbar(xs, ys, yerr=spread, marker="o", capsize=3, label="memory + category retrieval")
    for setting, x, y, _ in points:
        ax.annotate(setting.removeprefix("memory-"), (x, y), textcoords="offset points", xytext=(5, -12), fontsize=8)
    ax.axhline(base_mean, color="grey", label=f"baseline, no memory ({base_mean:.2f})")
    ax.axhline(base_mean + 1.5, color="grey", ls="--", label=f"target: baseline + 1.5 ({base_mean + 1.5:.2f})")
    ax.axhline(72.0, color="grey", ls=":", label="target: 72.0")
    ax.set(
        xlabel="dev type-set micro F1 of the query types retrieval used (%)",
        ylabel="CLUENER dev entity F1 (%)",
        title="Memory network vs the quality of the predicted entity types",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    save_figure(fig, args.output, f"{len(points)} settings")


if __name__ == "__main__":
    main()
