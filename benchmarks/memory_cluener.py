#!/usr/bin/env python
"""Associated memory network vs the same-setup baseline on CLUENER dev (char BiLSTM encoder, Tencent
vectors, self-attention 512, batch 16, length 64, n=4, dropout 0.1 as in the paper).

Baseline and memory+category over 3 seeds (mean ± std), category with the training sentences' types
predicted out of fold (the default) or in sample by the final classifier; memory+pos_edit, memory+gold_category
(oracle) and memory+random one seed each. Nine runs must fit a 2-core CPU session, so each trains
8 epochs instead of the paper's 20 (the BiLSTM-CRF baselines peak at epoch 9-10 of 20, with the
learning rate already half-decayed). The groups `baseline_20ep` and `category_20ep` are the paper's
20 epochs, three seeds each; `category_memgrad` trains the encoder through the memories too. The encoder's input
features (issue 45): `baseline_features` / `entity_features` (and `_recipe`: `common.ENCODER_RECIPE`), the ablation
`baseline_<feature set>`, and the seq2seq tagger against the BiLSTM-CRF of its own size (`seq2seq`, `crf128`, each
also `_features_recipe`).

    python benchmarks/memory_cluener.py [--groups baseline category] [--seeds 1 2] [--parallel 2]
    python benchmarks/memory_cluener.py --table-only
"""

from __future__ import annotations

import argparse
import statistics

from common import (
    ENCODER_FEATURES,
    ENCODER_RECIPE,
    FEATURE_PROJECTIONS,
    FEATURE_SETS,
    flags_from_argv,
    results,
    run_all,
)

COMMON = {"dataset": "cluener", "char_vectors": "tencent", "use_self_attention": True, "num_train_epochs": 8}
CRF128 = {"num_memory": 0, "use_self_attention": False, "lstm_hidden_size": 128, "tag_scheme": "BIEO"}
GROUPS = {
    "baseline": ({"num_memory": 0}, [1, 2, 3]),  # the same model without memory (self-attention kept)
    "category": (
        {"num_memory": 4, "memory_method": "category"},
        [1, 2, 3],
    ),  # training queries' types out of fold (default)
    "category_in_sample": ({"num_memory": 4, "memory_method": "category", "type_classifier_folds": 1}, [1, 2, 3]),
    # the query types from an encoder-CRF tagger (its Viterbi entities' types) instead of the pooled multi-label
    # classifier
    "category_tagger": ({"num_memory": 4, "memory_method": "category", "type_classifier_kind": "tagger"}, [1, 2, 3]),
    "pos_edit": ({"num_memory": 4, "memory_method": "pos_edit"}, [1]),
    "gold_category": ({"num_memory": 4, "memory_method": "gold_category"}, [1]),
    "random": ({"num_memory": 4, "memory_method": "random"}, [1]),
    # retrieval that brings the query's own strings: TF-IDF of character n-grams, bank entity strings, entity +
    # category
    "lexical": ({"num_memory": 4, "memory_method": "lexical"}, [1]),
    "entity": ({"num_memory": 4, "memory_method": "entity"}, [1, 2, 3]),
    # the encoder's input features (issue 45): char bigrams, softword and jieba word sets, with and without memory
    "baseline_features": ({"num_memory": 0, **ENCODER_FEATURES}, [1, 2, 3]),
    "entity_features": ({"num_memory": 4, "memory_method": "entity", **ENCODER_FEATURES}, [1, 2, 3]),
    # the same with the MSRA recipe of benchmarks/encoder.py
    "baseline_features_recipe": ({"num_memory": 0, **ENCODER_FEATURES, **ENCODER_RECIPE}, [1, 2, 3]),
    "entity_features_recipe": (
        {"num_memory": 4, "memory_method": "entity", **ENCODER_FEATURES, **ENCODER_RECIPE},
        [1, 2, 3],
    ),
    # the features projected to a narrower BiLSTM input (--feature_projection_size), for speed
    **{
        f"baseline_features_recipe_p{k}": (
            {"num_memory": 0, **ENCODER_FEATURES, **ENCODER_RECIPE, "feature_projection_size": k},
            [1],
        )
        for k in FEATURE_PROJECTIONS
    },
    # the ablation: each feature alone, and bigrams with softword, without memory
    **{
        f"baseline_{name}": ({"num_memory": 0, **flags}, [1])
        for name, flags in FEATURE_SETS.items()
        if name != "features"
    },
    # the seq2seq tagger against the BiLSTM-CRF of its own encoder (the seq2seq paper's: 128 per direction, BIEO, no
    # self-attention), with the features and recipe and without
    "crf128": ({**CRF128}, [1]),
    "seq2seq": ({"model_type": "seq2seq"}, [1]),
    "crf128_features_recipe": ({**CRF128, **ENCODER_FEATURES, **ENCODER_RECIPE}, [1]),
    "seq2seq_features_recipe": ({"model_type": "seq2seq", **ENCODER_FEATURES, **ENCODER_RECIPE}, [1]),
    "hybrid": ({"num_memory": 4, "memory_method": "hybrid"}, [1, 2, 3]),
    # entity retrieval trained to read new entities from memories (editable_memory.py's upper bound)
    "entity_swap50": ({"num_memory": 4, "memory_method": "entity", "memory_entity_swap_prob": 0.5}, [1, 2, 3]),
    # a smaller network for CPU throughput: BiLSTM 128 per direction (the seq2seq paper's), self-attention 256
    "entity_small": (
        {"num_memory": 4, "memory_method": "entity", "lstm_hidden_size": 128, "self_attention_size": 256},
        [1, 2, 3],
    ),
    # the paper's 20 epochs (a group's flags override COMMON's), three seeds each
    "baseline_20ep": ({"num_memory": 0, "num_train_epochs": 20}, [1, 2, 3]),
    "category_20ep": ({"num_memory": 4, "memory_method": "category", "num_train_epochs": 20}, [1, 2, 3]),
    "entity_20ep": ({"num_memory": 4, "memory_method": "entity", "num_train_epochs": 20}, [1, 2, 3]),
    "hybrid_20ep": ({"num_memory": 4, "memory_method": "hybrid", "num_train_epochs": 20}, [1, 2, 3]),
    "entity_swap50_20ep": (
        {"num_memory": 4, "memory_method": "entity", "memory_entity_swap_prob": 0.5, "num_train_epochs": 20},
        [1, 2, 3],
    ),
    # gradients through the memories' encodings too (the paper encodes s and a_j with one trained encoder;
    # the default detaches the memories: a step costs 1.23x a baseline step against 3.07x, RESULTS.md "Speed")
    "category_memgrad": ({"num_memory": 4, "memory_method": "category", "memory_gradient": True}, [1]),
    # between category and gold_category: 25% / 50% of every split's predicted type sets replaced by the gold ones
    "category_oracle25": ({"num_memory": 4, "memory_method": "category", "oracle_type_share": 0.25}, [1]),
    "category_oracle50": ({"num_memory": 4, "memory_method": "category", "oracle_type_share": 0.5}, [1, 2]),
}
EXTRA_GROUPS = (
    "baseline_features",
    "baseline_features_recipe",
    "entity_features_recipe",
    "baseline_bigrams",
    "baseline_softword",
    "baseline_wordsets",
    "baseline_bigrams_softword",
    "entity_features",
    "entity_swap50",
    "entity_small",
    "baseline_20ep",
    "category_20ep",
    "entity_20ep",
    "hybrid_20ep",
    "entity_swap50_20ep",
    "category_memgrad",
    "category_oracle25",
    "category_oracle50",
)  # not run by default


def run_names(group: str) -> dict[str, dict]:
    flags, seeds = GROUPS[group]
    return {f"memory-{group}-s{seed}": {**COMMON, **flags, "seed": seed} for seed in seeds}


def table(groups: list[str]) -> str:
    rows = [
        "| setting | seeds | dev F1 (mean ± std) | per seed | type classifier micro F1: dev (train, out of fold) | "
        "wall (min/run) |",
        "|---|---|---|---|---|---|",
    ]
    for group in groups:
        found = [r for r in (results(name) for name in run_names(group)) if r]
        if not found:
            rows.append(f"| {group} | 0 | (not run) | – | – | – |")
            continue
        f1 = [100 * r["validation_f1"] for r in found]
        std = statistics.stdev(f1) if len(f1) > 1 else 0.0
        clf = [
            100 * r["type_classifier_validation"]["micro"]["f1"] for r in found if "type_classifier_validation" in r
        ]
        clf_cell = f"{statistics.mean(clf):.2f}" if clf else "–"
        oof = [
            100 * r["type_classifier_train_out_of_fold"]["micro"]["f1"]
            for r in found
            if "type_classifier_train_out_of_fold" in r
        ]
        if oof:
            clf_cell += f" ({statistics.mean(oof):.2f})"
        blended = [100 * r["retrieval_types_micro"]["validation"]["f1"] for r in found if "retrieval_types_micro" in r]
        if blended:  # --oracle_type_share: what retrieval used
            clf_cell += f"; blended with gold: {statistics.mean(blended):.2f}"
        wall = statistics.mean(r["wall_minutes"] or 0 for r in found)
        per_seed = ", ".join(f"{x:.2f}" for x in f1)
        rows.append(
            f"| {group} | {len(found)} | **{statistics.mean(f1):.2f} ± {std:.2f}** | {per_seed} | {clf_cell} | "
            f"{wall:.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--groups", nargs="+", default=[g for g in GROUPS if g not in EXTRA_GROUPS], choices=list(GROUPS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, help="run only these of each group's seeds")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("extra", nargs="*", help="more train.py arguments after --")
    args = parser.parse_args()
    if not args.table_only:
        runs = {
            name: {**flags, **flags_from_argv(args.extra)}
            for g in args.groups
            for name, flags in run_names(g).items()
            if not args.seeds or int(name.rsplit("-s", 1)[1]) in args.seeds
        }
        # interleave seeds so that every group has a result early: baseline-s1, category-s1, ..., then seeds 2 and 3
        runs = dict(sorted(runs.items(), key=lambda kv: int(kv[0].rsplit("-s", 1)[1])))
        run_all(runs, args.parallel, "memory runs")
    print(table(args.groups))


if __name__ == "__main__":
    main()
