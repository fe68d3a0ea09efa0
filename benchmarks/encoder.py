#!/usr/bin/env python
"""The character encoder under every model (issue 45): the training recipe of the char BiLSTM-CRF, step by step,
on MSRA test (then People's Daily test and CLUENER dev). Each run is a plain ``train.py`` invocation; the table is
read back from the runs' ``all_results.json``.

    python benchmarks/encoder.py --runs recipe_drop05-msra recipe_drop05_lr2e3-msra --parallel 2
    python benchmarks/encoder.py --runs "recipe_drop05+bigrams_softword-msra" "recipe_drop05+all-msra"   # features
    python benchmarks/encoder.py --runs "recipe_drop05_lr2e3+all+entity-peoples_daily"   # the memory network on it
    python benchmarks/encoder.py --runs "recipe_drop05_lr2e3_8ep+all-msra" "recipe_drop05_lr2e3_8ep+all+entity-msra"
    python benchmarks/encoder.py --runs "recipe_drop05_lr2e3_8ep+all-msra" --seeds 43 44   # more seeds: NAME-s43, ...
    python benchmarks/encoder.py --table-only                      # every finished run
    # a run stopped at a session's end goes on from its last checkpoint when the same command is run again

The base is the seq2seq paper's BiLSTM-CRF (128 per direction, BIEO), windows of 128, batch 32 of similar
lengths, Tencent char vectors, 16 epochs, best epoch on the 5% of train held out: the ``crf128_16ep`` runs of
``seq2seq_pd_msra.py`` (MSRA test 86.96 +- 0.42), which each recipe step changes in one flag.
"""

from __future__ import annotations

import argparse

from common import (
    DEFAULT_SEED,
    ENCODER_FEATURES,
    ENCODER_RECIPE,
    FEATURE_SETS,
    RUNS_DIR,
    flags_from_argv,
    markdown_table,
    mean_std,
    results,
    run_all,
    run_name,
    split_run_name,
)

BASE = {
    "num_memory": 0,
    "use_self_attention": False,
    "char_vectors": "tencent",
    "max_seq_length": 128,
    "per_device_train_batch_size": 32,
    "train_sampling_strategy": "group_by_length",
    "lstm_hidden_size": 128,
    "tag_scheme": "BIEO",
    "num_train_epochs": 16,
}
SPLIT = {"msra": "test", "peoples_daily": "test", "cluener": "validation"}
# recipe steps: name -> the flags that differ from BASE
STEPS = {
    "recipe_drop05": {"hidden_dropout_prob": 0.5},
    "recipe_drop05_lr2e3": ENCODER_RECIPE,
    # the same in 8 epochs: a memory-network run on MSRA then fits in one 3-hour session on one thread
    "recipe_drop05_lr2e3_8ep": {**ENCODER_RECIPE, "num_train_epochs": 8},
}
# input features on a recipe: name -> the flags that add them
FEATURES = {
    **{"all" if name == "features" else name: flags for name, flags in FEATURE_SETS.items()},
    # bigram and word embeddings from their characters' Tencent vectors (train.py --feature_vectors chars)
    "bigrams_softword_chars": {**FEATURE_SETS["bigrams_softword"], "feature_vectors": "chars"},
    "all_chars": {**ENCODER_FEATURES, "feature_vectors": "chars"},
    # the same from skip-gram vectors of the training split (train.py --feature_vectors word2vec)
    "all_w2v": {**ENCODER_FEATURES, "feature_vectors": "word2vec"},
}
for _step in list(STEPS):
    for _name, _flags in FEATURES.items():
        STEPS[f"{_step}+{_name}"] = {**STEPS[_step], **_flags}
# the two other models on the best encoder: the memory network (n = 4 memories by entity retrieval) and the
# seq2seq tagger (its attention decoder in place of the CRF)
for _step in ("recipe_drop05_lr2e3", "recipe_drop05_lr2e3_8ep"):
    STEPS[f"{_step}+all+entity"] = {**STEPS[f"{_step}+all"], "num_memory": 4, "memory_method": "entity"}
    STEPS[f"{_step}+all+seq2seq"] = {**STEPS[f"{_step}+all"], "model_type": "seq2seq"}
RUNS = {f"{step}-{corpus}": {**BASE, "dataset": corpus, **flags} for step, flags in STEPS.items() for corpus in SPLIT}


def table(names: list[str]) -> str:
    """One row per run, then the mean ± std of each configuration run with more than one seed."""
    rows, f1s = [], {}
    for name in names:
        base, seed = split_run_name(name)
        split = SPLIT[base.rsplit("-", 1)[1]]
        res = results(name)
        if res is None:
            rows.append([base, seed, split, "–", "–", "(not finished)", "–", "–"])
            continue
        f1s.setdefault(base, []).append(100 * res[split + "_f1"])
        rows.append([
            base, seed, split, f"{100 * res[split + '_precision']:.2f}", f"{100 * res[split + '_recall']:.2f}",
            f"**{100 * res[split + '_f1']:.2f}**", f"{res['best_epoch']:.0f}" if res["best_epoch"] else "–",
            f"{res['wall_minutes']:.0f}" if res["wall_minutes"] else "–",
        ])  # fmt: skip
    rows += [
        [base, f"{len(f1)} seeds", "", "", "", f"**{mean_std(f1)}**", "", ""]
        for base, f1 in f1s.items()
        if len(f1) > 1
    ]
    return markdown_table(["run", "seed", "split", "P", "R", "F1", "best epoch", "wall (min)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=list(RUNS),
        metavar="STEP-CORPUS",
        help=f"STEP: {', '.join(STEPS)}; CORPUS: {', '.join(SPLIT)}",
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[DEFAULT_SEED], help="train.py --seed of each run (same test split)"
    )
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (each gets cores // parallel threads)")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("extra", nargs="*", help="more train.py arguments after --")
    args = parser.parse_args()
    if args.runs:
        named = [(base, seed) for base in args.runs for seed in args.seeds]
    else:  # every run with a folder, of any seed
        named = [split_run_name(path.name) for path in sorted(RUNS_DIR.iterdir())]
    runs = {run_name(base, seed): {**RUNS[base], "seed": seed} for base, seed in named if base in RUNS}
    if not args.table_only:
        run_all(
            {name: {**flags, **flags_from_argv(args.extra)} for name, flags in runs.items()},
            args.parallel,
            "encoder runs",
        )
    print(table(list(runs)))


if __name__ == "__main__":
    main()
