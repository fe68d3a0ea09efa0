#!/usr/bin/env python
"""Speed of the memory model against the plain encoder-CRF, measured as ratios in one run.

1. Retrieval, cold (no cache): POS-tag CLUENER train + dev and rank the 10,748-sentence bank for
   every query, by pos_edit and by category (gold types stand in for the classifier's: same cost).
2. Inference latency at batch 1 and batch 32 on dev sentences: memory model (n=4, bank encodings
   cached) vs the same model without memory, alternating for 5 rounds (median ratio reported). The
   memory model is timed twice: given its memories' bank indices (retrieved beforehand), and end to
   end on input_ids alone, as the pipeline calls it, retrieving its own memories by category on
   every call (POS tagging, the type classifier - pooled or tagger kind -, ranking the bank).
   With --bert_type_classifier, also end to end with a BERT-base pooled type classifier beside the
   BiLSTM tagger (`--type_classifier_encoder hfl/chinese-roberta-wwm-ext`; BERT-base shapes).
3. Training step time (forward + backward + AdamW) at batch 16: memory model vs baseline, with
   and without gradient through the memory encodings (`memory_gradient`).

    python benchmarks/memory_speed.py [--sentences 1343] [--rounds 5] [--steps 60] \\
        [--no_self_attention] [--bert_type_classifier]

The models have random weights: speed does not depend on what they learned.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import BertConfig

from common import pad  # noqa: E402  (first: it puts the repository on sys.path)

from data_scripts.features import BERT_VOCAB, default_data_dir, load_tokenizer, tokenize_and_align  # noqa: E402
from data_scripts.memory_data import gold_type_matrices  # noqa: E402
from data_scripts.readers import read_cluener  # noqa: E402
from modeling import MemoryNetConfig, MemoryNetForTokenClassification  # noqa: E402
from modeling.configuration_memory_ner import TYPE_CLASSIFIER_KINDS  # noqa: E402
from modeling.memory_bank import MemoryBank  # noqa: E402
from modeling.retrieval import pos_strings, rank_memories  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sentences", type=int, default=1343, help="dev sentences tagged per latency measurement (default: all)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds, baseline and memory model alternating")
    parser.add_argument("--steps", type=int, default=60, help="training steps timed per model")
    parser.add_argument("--num_memory", type=int, default=4)
    parser.add_argument(
        "--no_self_attention",
        action="store_true",
        help="leave out the self-attention layer (the accuracy benchmarks use it)",
    )
    parser.add_argument(
        "--bert_type_classifier",
        action="store_true",
        help="also time end to end with a BERT-base type classifier (chinese-roberta-wwm-ext's shapes, random "
        "weights)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    data = default_data_dir()
    raw = read_cluener(data / "cluener", splits=("train", "dev"))
    texts = {s: ["".join(t) for t in raw[s]["tokens"]] for s in ("train", "dev")}
    names = raw["train"].features["ner_tags"].feature.names
    types = gold_type_matrices(
        raw, "BIOS", MemoryNetConfig(id2label=dict(enumerate(names))).entity_types
    )  # the models' type order
    rows = []

    # 1. retrieval, cold
    all_pos, t_pos = timed(lambda: pos_strings(texts["train"] + texts["dev"], show_progress=True))
    bank_pos, dev_pos = all_pos[: len(texts["train"])], all_pos[len(texts["train"]) :]
    for method in ("pos_edit", "category"):

        def run():
            rank_memories(
                method,
                args.num_memory,
                bank_pos,
                types["train"],
                bank_pos,
                types["train"],
                list(range(len(bank_pos))),
                texts["train"],
                texts["train"],
            )
            return rank_memories(
                method,
                args.num_memory,
                bank_pos,
                types["train"],
                dev_pos,
                types["dev"],
                None,
                texts["dev"],
                texts["train"],
            )

        _, t_rank = timed(run)
        rows.append(
            (
                f"retrieval {method}: {len(all_pos)} queries x {len(bank_pos)} bank, cold",
                f"{t_pos + t_rank:.1f} s",
                f"POS tagging {t_pos:.1f} s + ranking {t_rank:.1f} s",
                "target <= 20 s",
            )
        )

    # models: the same BiLSTM-CRF with and without memory
    tokenizer, _ = load_tokenizer(str(data / BERT_VOCAB))
    enc = {
        s: tokenize_and_align({"tokens": raw[s]["tokens"], "ner_tags": raw[s]["ner_tags"]}, tokenizer, 64)
        for s in ("train", "dev")
    }
    common = dict(
        id2label=dict(enumerate(names)), vocab_size=len(tokenizer), use_self_attention=not args.no_self_attention
    )
    base = MemoryNetForTokenClassification(MemoryNetConfig(num_memory=0, **common)).eval()

    def memory_model(**config_kwargs) -> MemoryNetForTokenClassification:
        model = MemoryNetForTokenClassification(
            MemoryNetConfig(num_memory=args.num_memory, **config_kwargs, **common)
        ).eval()
        model.set_memory_bank(
            MemoryBank.from_sentences(
                enc["train"]["input_ids"], enc["train"]["labels"], types["train"], bank_pos, tokenizer.get_vocab()
            )
        )
        return model

    mem = memory_model()
    dev_memories = rank_memories("pos_edit", args.num_memory, bank_pos, types["train"], dev_pos)
    train_memories = rank_memories(
        "pos_edit", args.num_memory, bank_pos, types["train"], bank_pos, None, list(range(len(bank_pos)))
    )
    end_to_end = {  # memory models that retrieve by category inside the call, one per type-classifier kind
        f"memory, end to end ({kind} type classifier)": memory_model(
            memory_method="category", type_classifier_kind=kind
        )
        for kind in TYPE_CLASSIFIER_KINDS
    }
    if (
        args.bert_type_classifier
    ):  # BertConfig's defaults are BERT-base's: 12 layers of 768, as hfl/chinese-roberta-wwm-ext
        end_to_end["memory, end to end (BERT-base pooled type classifier)"] = memory_model(
            memory_method="category",
            type_classifier_encoder_type="transformers",
            type_classifier_encoder_config=BertConfig(vocab_size=len(tokenizer)).to_dict(),
        )

    # 2. inference latency: the models alternate for --rounds rounds; the median ratio to the baseline of each round is
    # reported
    n = min(args.sentences, len(texts["dev"]))
    timed_models = {"memory, memory_ids given": mem, **end_to_end}
    for batch in (1, 32):

        def tag_all(model, batch=batch):
            with torch.no_grad():
                for i in range(0, n, batch):
                    ids = pad(enc["dev"]["input_ids"][i : i + batch], 0)
                    kwargs = (
                        {"memory_ids": torch.as_tensor(dev_memories[i : i + batch])} if model is mem else {}
                    )  # the others retrieve
                    model(ids, attention_mask=(ids != 0).long(), **kwargs)

        for model in (base, *timed_models.values()):
            tag_all(model)  # warm-up (fills the bank-encoding caches, loads jieba's dictionary)
        rounds = []
        for _ in tqdm(range(args.rounds), desc=f"latency, batch {batch}", leave=False):
            rounds.append(
                {
                    name: timed(lambda m=model: tag_all(m))[1]
                    for name, model in {"baseline": base, **timed_models}.items()
                }
            )
        t_base = statistics.median(r["baseline"] for r in rounds)
        for name, model in timed_models.items():
            t_mem = statistics.median(r[name] for r in rounds)
            ratios = [r[name] / r["baseline"] for r in rounds]
            rows.append(
                (
                    f"inference, batch {batch}, {n} dev sentences, median of {args.rounds} rounds: {name}",
                    f"{1000 * t_mem / n:.2f} vs {1000 * t_base / n:.2f} ms/sentence",
                    f"ratio {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})",
                    "target <= 1.3x" if model is mem else "- (retrieval included)",
                )
            )

    # 3. training steps
    step_times = {}
    variants = (("baseline", base, None), ("memory", mem, True), ("memory, no memory gradient", mem, False))
    for name, model, memory_gradient in variants:
        model.train()
        if memory_gradient is not None:
            model.config.memory_gradient = memory_gradient
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
        order = np.random.default_rng(0).permutation(len(texts["train"]))

        def steps():
            for k in tqdm(range(args.steps), desc=f"training steps ({name})", leave=False):
                idx = order[k * 16 : (k + 1) * 16]
                ids = pad([enc["train"]["input_ids"][i] for i in idx], 0)
                labels = pad([enc["train"]["labels"][i] for i in idx], -100)
                kwargs = {}
                if model is mem:
                    m_ids, m_mask, m_labels = mem.memory_bank.gather(torch.as_tensor(train_memories[idx]))
                    kwargs = {"memory_input_ids": m_ids, "memory_attention_mask": m_mask, "memory_tag_ids": m_labels}
                loss = model(ids, attention_mask=(ids != 0).long(), labels=labels, **kwargs).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()

        _, step_times[name] = timed(steps)
    epoch = len(texts["train"]) / 16
    base_ms = 1000 * step_times["baseline"] / args.steps
    for name, _, _ in variants[1:]:
        ms = 1000 * step_times[name] / args.steps
        rows.append(
            (
                f"training, batch 16, {args.steps} steps: {name}",
                f"{ms:.0f} vs {base_ms:.0f} ms/step",
                f"ratio {ms / base_ms:.2f}x (epoch ~{epoch * ms / 60000:.1f} vs ~{epoch * base_ms / 60000:.1f} min)",
                "target <= 3x",
            )
        )

    print("\n| measurement | time | ratio / detail | target |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
