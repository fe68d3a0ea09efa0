#!/usr/bin/env python
"""Decoding speed of Seq2SeqAttnTagger (greedy, beam 4) against the BiLSTM-CRF's Viterbi, in one run.

People's Daily 1998 test sentences (the seeded 80/20 split, windows of up to 126 characters) are
tagged at batch 1 and batch 32. For each model two figures: the whole tagging call (encoder +
decoding) and the decoding alone (decoder loop / Viterbi on precomputed encoder output). The three
decoders alternate for ``--rounds`` rounds and the median is reported.

    python benchmarks/seq2seq_speed.py [--sentences 512] [--rounds 3]

The models have random weights: speed does not depend on what they learned (beam search does the
same work whatever the scores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tqdm.auto import tqdm

from common import pad  # noqa: E402  (first: it puts the repository on sys.path)

from data_scripts.features import BERT_VOCAB, default_data_dir, load_tokenizer, tokenize_and_align  # noqa: E402
from data_scripts.readers import read_peoples_daily_1998  # noqa: E402

from modeling import MemoryNetConfig, MemoryNetForTokenClassification, Seq2SeqAttnConfig, Seq2SeqAttnTagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=512, help="test sentences tagged per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = default_data_dir()
    test = read_peoples_daily_1998(data / "peoples_daily_1998" / "199801.txt", "BIEO", max_chars=126)["test"]
    test = test.select(range(min(args.sentences, len(test))))
    tokenizer, _ = load_tokenizer(str(data / BERT_VOCAB))
    enc = tokenize_and_align({"tokens": test["tokens"], "ner_tags": test["ner_tags"]}, tokenizer, 128)
    labels = test.features["ner_tags"].feature.names
    common = {
        "id2label": dict(enumerate(labels)),
        "vocab_size": len(tokenizer),
        "tag_scheme": "BIEO",
        "max_length": 128,
    }
    crf = MemoryNetForTokenClassification(
        MemoryNetConfig(num_memory=0, use_self_attention=False, **common)
    ).eval()  # the baseline of benchmarks/baselines.py
    s2s = Seq2SeqAttnTagger(Seq2SeqAttnConfig(**common)).eval()
    decoders = {
        "BiLSTM-CRF, Viterbi": (crf, {}),
        "Seq2Seq, greedy": (s2s, {"num_beams": 1}),
        "Seq2Seq, beam 4": (s2s, {"num_beams": 4}),
    }
    n = len(test)
    chars = sum(len(t) for t in test["tokens"])
    rows = []
    for batch in (1, 32):
        batches = []
        for i in range(0, n, batch):
            ids = pad(enc["input_ids"][i : i + batch], tokenizer.pad_token_id)
            batches.append((ids, (ids != tokenizer.pad_token_id).long()))

        def tag_all(model, kwargs):
            with torch.no_grad():
                for ids, mask in batches:
                    model(ids, attention_mask=mask, return_tags=True, **kwargs)

        def decode_only(model, kwargs, encoded):
            with torch.no_grad():
                for (ids, mask), hidden in zip(batches, encoded):
                    if model is crf:
                        model.crf.decode(hidden, mask)
                    else:
                        model.generate_tags(attention_mask=mask, hidden=hidden, **kwargs)

        with torch.no_grad():  # what the decoders start from: CRF emissions, seq2seq encoder states
            encoded = {
                id(crf): [crf(ids, attention_mask=mask, return_tags=False).logits for ids, mask in batches],
                id(s2s): [s2s.encode(ids, mask) for ids, mask in batches],
            }
        times = {name: {"total": [], "decode": []} for name in decoders}
        for _ in tqdm(range(args.rounds), desc=f"batch {batch}", leave=False):
            for name, (model, kwargs) in decoders.items():
                start = time.perf_counter()
                tag_all(model, kwargs)
                times[name]["total"].append(time.perf_counter() - start)
                start = time.perf_counter()
                decode_only(model, kwargs, encoded[id(model)])
                times[name]["decode"].append(time.perf_counter() - start)
        base = statistics.median(times["BiLSTM-CRF, Viterbi"]["total"])
        for name in decoders:
            total, decode = (statistics.median(times[name][k]) for k in ("total", "decode"))
            rows.append((f"batch {batch}", name, f"{n / total:.1f}", f"{n / decode:.1f}", f"{total / base:.2f}x"))
    print(f"\n{n} People's Daily test sentences ({chars} characters), median of {args.rounds} rounds\n")
    print(
        "| batch | decoder | sentences/s (encoder + decoding) | sentences/s (decoding only) | time vs Viterbi model "
        "|\n|---|---|---|---|---|"
    )
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
