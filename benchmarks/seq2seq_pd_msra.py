#!/usr/bin/env python
"""Seq2SeqAttnTagger (char embeddings from the Tencent vectors) vs the char BiLSTM-CRF on the same
splits: People's Daily 1998 (seeded 80/20, test) and MSRA (standard test). Greedy decoding during
training and for the reported test F1; each finished seq2seq run is then decoded again with a beam.

Both models: windows of up to 128 tokens, batch 32 of similar lengths (group_by_length), lr 1e-3 (the seq2seq paper's),
Tencent vectors,
model selection on the 5% of train held out; the CRF model is `benchmarks/baselines.py`'s baseline.

    python benchmarks/seq2seq_pd_msra.py [--runs seq2seq-peoples_daily crf-peoples_daily] [--seeds 43 44] \\
        [--parallel 2]
    python benchmarks/seq2seq_pd_msra.py --table-only [--beams 4] [--seeds 42 43 44]

Run names are MODEL-CORPUS for train.py's default seed (42) and MODEL-CORPUS-sSEED for the others;
every seed is scored on the same test split (train.py's --split_seed stays 42).
"""

from __future__ import annotations

import argparse
import json

from tqdm.auto import tqdm

from common import DEFAULT_SEED, RUNS_DIR, flags_from_argv, mean_std, pad, results, run_all, run_name, split_run_name

from data_scripts.corpora import load_corpus  # noqa: E402
from data_scripts.features import tokenize_and_align  # noqa: E402
from data_scripts.metrics import entity_metrics  # noqa: E402
from modeling import Seq2SeqAttnTagger  # noqa: E402

COMMON = {
    "char_vectors": "tencent",
    "max_seq_length": 128,
    "per_device_train_batch_size": 32,
    "train_sampling_strategy": "group_by_length",
}
CRF = {"num_memory": 0, "use_self_attention": False}
SEQ2SEQ = {"model_type": "seq2seq"}
EPOCHS = {"peoples_daily": 8, "msra": 4}  # MSRA train is ~3x People's Daily: 4 epochs, as its foundation baseline
PAPER = {
    ("seq2seq", "peoples_daily"): "94.11 (BERT)",
    ("crf", "peoples_daily"): "89.91",
    ("seq2seq", "msra"): "93.55 (BERT)",
    ("crf", "msra"): "89.08 (its 23,700 / 4,400 subset)",
}
MODELS = {"seq2seq": SEQ2SEQ, "crf": CRF}
RUNS = {
    f"{model}-{corpus}": {**MODELS[model], "dataset": corpus, **COMMON, "num_train_epochs": EPOCHS[corpus]}
    for corpus in ("peoples_daily", "msra")
    for model in MODELS
}
# seq2seq16ep: twice the epochs, since the 8-epoch run was still improving at its last epoch (a
# 256-wide encoder, the CRF's, was started too: about twice as slow per step in its first minutes,
# too long for one session, so it was stopped)
RUNS["seq2seq16ep-peoples_daily"] = {**RUNS["seq2seq-peoples_daily"], "num_train_epochs": 16}
# crf128: the BiLSTM-CRF at the seq2seq paper's own settings (section 3.1: one BiLSTM layer, 128 per
# direction, BIEO), i.e. the seq2seq tagger's encoder with a CRF instead of the attention decoder;
# the "crf" rows are the foundation baseline's wider BiLSTM (256 per direction, BIOS)
for _corpus in ("peoples_daily", "msra"):
    RUNS[f"crf128-{_corpus}"] = {**RUNS[f"crf-{_corpus}"], "lstm_hidden_size": 128, "tag_scheme": "BIEO"}
# 8 epochs on MSRA: its 4-epoch runs were all still improving at their last epoch
RUNS["seq2seq8ep-msra"] = {**RUNS["seq2seq-msra"], "num_train_epochs": 8}
RUNS["crf128_8ep-msra"] = {**RUNS["crf128-msra"], "num_train_epochs": 8}
# 16 epochs on People's Daily: the same schedule as seq2seq16ep, so that the two compare epoch for epoch
RUNS["crf128_16ep-peoples_daily"] = {**RUNS["crf128-peoples_daily"], "num_train_epochs": 16}
# 16 epochs on MSRA too (the paper's MSRA curves peak after about 20 of its 50 epochs): both models were still rising
# after 8
RUNS["seq2seq16ep-msra"] = {**RUNS["seq2seq-msra"], "num_train_epochs": 16}
RUNS["crf128_16ep-msra"] = {**RUNS["crf128-msra"], "num_train_epochs": 16}
# scheduled sampling: the seq2seq16ep run whose decoder is fed its own previous choice instead of the
# gold tag with probability 0.25 / 0.5 in training (config.scheduled_sampling_prob; 0 = teacher forcing)
for _p in ("25", "50"):
    RUNS[f"seq2seq16ep_ss{_p}-peoples_daily"] = {
        **RUNS["seq2seq16ep-peoples_daily"],
        "scheduled_sampling_prob": f"0.{_p}",
    }
# the decoder of eqs. 9-10 as written: no encoder state h_i of the character being tagged, so the
# attention alone has to find it (config.feed_encoder_state; this repo's default feeds h_i)
RUNS["seq2seq16ep_attnonly-peoples_daily"] = {**RUNS["seq2seq16ep-peoples_daily"], "feed_encoder_state": False}
# the additive score (vᵀ tanh(W_q s + W_k h)) instead of general, with and without h_i
RUNS["seq2seq16ep_additive-peoples_daily"] = {**RUNS["seq2seq16ep-peoples_daily"], "attention_score": "additive"}
RUNS["seq2seq16ep_attnonly_additive-peoples_daily"] = {
    **RUNS["seq2seq16ep_attnonly-peoples_daily"],
    "attention_score": "additive",
}


def parse_name(name: str) -> tuple[str, str, int]:
    """``seq2seq16ep-peoples_daily-s43`` -> ``("seq2seq16ep", "peoples_daily", 43)``."""
    base, seed = split_run_name(name)
    model, corpus = base.split("-")
    return model, corpus, seed


def test_batches(name: str, model: Seq2SeqAttnTagger, batch_size: int = 64):
    """The run's test split in batches: ``(input_ids, attention_mask, labels, gold tag names)``."""
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(RUNS_DIR / name)
    corpus = parse_name(name)[1]
    test = load_corpus(corpus, scheme=model.config.tag_scheme, max_chars=model.config.max_length - 2)["test"]
    enc = tokenize_and_align(
        {"tokens": test["tokens"], "ner_tags": test["ner_tags"]}, tokenizer, model.config.max_length
    )
    names = test.features["ner_tags"].feature.names
    for i in tqdm(range(0, len(test), batch_size), desc=name):
        rows, labels = enc["input_ids"][i : i + batch_size], enc["labels"][i : i + batch_size]
        ids, labels = pad(rows, tokenizer.pad_token_id), pad(labels, -100)
        yield (
            ids,
            (ids != tokenizer.pad_token_id).long(),
            labels,
            [[names[t] for t in chars] for chars in test["ner_tags"][i : i + batch_size]],
        )


def beam_scores(name: str, beams: int) -> dict:
    """Test F1 of a finished seq2seq run decoded with ``beams`` (cached in the run folder)."""
    cache = RUNS_DIR / name / f"test_beam{beams}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    model = Seq2SeqAttnTagger.from_pretrained(RUNS_DIR / name).eval()
    gold, pred = [], []
    for ids, mask, _, gold_tags in test_batches(name, model):
        gold += gold_tags
        pred += [[model.config.id2label[t] for t in tags] for tags in model.decode(ids, mask, num_beams=beams)]
    scores = entity_metrics(gold, pred, model.config.tag_scheme)
    out = {k: scores[k] for k in ("precision", "recall", "f1")}
    cache.write_text(json.dumps(out, indent=2))
    return out


def table(names: list[str], beams: int) -> str:
    rows = [
        f"| model | corpus | seed | test sentences | P | R | F1 (greedy / Viterbi) | F1 (beam {beams}) | best epoch | "
        "wall (min) | paper |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    f1s: dict[tuple[str, str], list[tuple[float, float | None]]] = {}
    for name in names:
        model, corpus, seed = parse_name(name)
        paper = PAPER[("crf" if model.startswith("crf") else "seq2seq", corpus)]
        res = results(name)
        if res is None:
            rows.append(f"| {model} | {corpus} | {seed} | – | – | – | (not run) | – | – | – | {paper} |")
            continue
        beam = 100 * beam_scores(name, beams)["f1"] if model.startswith("seq2seq") else None
        f1s.setdefault((model, corpus), []).append((100 * res["test_f1"], beam))
        epoch = f"{res['best_epoch']:.0f}" if res["best_epoch"] else "–"
        wall = f"{res['wall_minutes']:.1f}" if res["wall_minutes"] else "–"
        rows.append(
            f"| {model} | {corpus} | {seed} | {res['test_examples']} | {100 * res['test_precision']:.2f} | "
            f"{100 * res['test_recall']:.2f} | "
            f"**{100 * res['test_f1']:.2f}** | {'–' if beam is None else f'{beam:.2f}'} | {epoch} | {wall} | {paper} |"
        )
    for (model, corpus), scores in f1s.items():
        if len(scores) > 1:
            rows.append(
                f"| {model}, mean ± std | {corpus} | {len(scores)} seeds | | | | "
                f"**{mean_std([g for g, _ in scores])}** | "
                f"{'–' if scores[0][1] is None else mean_std([b for _, b in scores])} | | | |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[DEFAULT_SEED],
        help="train.py --seed of each run (the test split stays the same)",
    )
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--beams", type=int, default=4, help="beam width of the second decoding of the seq2seq runs")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("extra", nargs="*", help="more train.py arguments after --")
    args = parser.parse_args()
    runs = {
        run_name(base, seed): {**RUNS[base], "seed": seed, **flags_from_argv(args.extra)}
        for seed in args.seeds
        for base in args.runs
    }
    if not args.table_only:
        run_all(runs, args.parallel, "seq2seq vs CRF runs")
    print(table(list(runs), args.beams))


if __name__ == "__main__":
    main()
