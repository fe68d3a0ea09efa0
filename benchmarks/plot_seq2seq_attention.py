#!/usr/bin/env python
"""Where the seq2seq tagger's decoder looks: the attention a_it (eq. 7) of its greedy decoding.

For each finished seq2seq run: decode the first ``--sentences`` test sentences greedily, replay the
decoder on its own tags with the attention recorded (the same steps, so the same scores: checked),
and print how much of each step's attention falls on the character that step tags. Then draw one
test sentence's attention, one panel per run: rows are the decoder steps (the character and its
predicted tag), columns the input tokens. A decoder that has found its alignment shows a diagonal.

    python benchmarks/plot_seq2seq_attention.py seq2seq16ep-peoples_daily seq2seq16ep_attnonly-peoples_daily \\
        -o benchmarks/seq2seq_attention.png
    python benchmarks/plot_seq2seq_attention.py RUN --index 12      # another test sentence

RUN is a folder in benchmarks/runs (named MODEL-CORPUS[-sSEED], see seq2seq_pd_msra.py). Needs a
font with Chinese characters (``apt-get install fonts-wqy-microhei``).
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from transformers import BertTokenizerFast  # noqa: E402

from common import RUNS_DIR, save_figure, short_tag, use_cjk_font  # noqa: E402
from seq2seq_pd_msra import test_batches  # noqa: E402


from modeling import Seq2SeqAttnTagger  # noqa: E402
from modeling.crf import character_mask  # noqa: E402


def replay(model: Seq2SeqAttnTagger, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy tags ``[batch, length]`` and the attention of each greedy step ``[batch, characters, length]``."""
    hidden = model.encode(ids, mask)
    tags, greedy_logits = model.generate_tags(attention_mask=mask, num_beams=1, hidden=hidden)
    logits, attention = model.teacher_forced_logits(hidden, mask, tags, output_attentions=True)
    chars = character_mask(mask)[:, 1:-1]  # step i tags token i + 1
    if not torch.allclose(logits[chars], greedy_logits[:, 1:-1][chars], atol=1e-4):
        raise RuntimeError("replaying the greedy tags did not reproduce the greedy step scores")
    return tags, attention


def attention_stats(model: Seq2SeqAttnTagger, name: str, limit: int) -> dict:
    """Over the first ``limit`` test sentences: the mean attention on the tagged character, on it
    and its two neighbours, and the share of steps whose largest weight is on the tagged character."""
    own = near = top = steps = 0.0
    sentences = 0
    for ids, mask, _, _ in test_batches(name, model):
        _, attention = replay(model, ids, mask)
        for b, n in enumerate((mask.sum(1) - 2).tolist()[: limit - sentences]):
            a = attention[b, :n]  # [characters, tokens]; character i is token i + 1
            idx = torch.arange(n)
            own += a[idx, idx + 1].sum().item()
            near += (a[idx, idx] + a[idx, idx + 1] + a[idx, idx + 2]).sum().item()
            top += (a.argmax(dim=-1) == idx + 1).sum().item()
            steps += n
            sentences += 1
        if sentences >= limit:
            break
    return {"sentences": sentences, "own": own / steps, "near": near / steps, "top": top / steps}


def pick_sentence(
    name: str, model: Seq2SeqAttnTagger, index: int | None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Test sentence ``index``, or the first of 15-30 characters with two or more entities."""
    seen = 0
    for ids, mask, _, gold in test_batches(name, model):
        for b, tags in enumerate(gold):
            chosen = (
                seen == index
                if index is not None
                else (15 <= len(tags) <= 30 and sum(t.startswith("B-") for t in tags) >= 2)
            )
            if chosen:
                width = int(mask[b].sum())
                return ids[b : b + 1, :width], mask[b : b + 1, :width], tags
            seen += 1
    raise SystemExit(
        f"{name}: no test sentence "
        f"{'number ' + str(index) if index is not None else 'of 15-30 characters with 2+ entities'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="seq2seq run folders in benchmarks/runs")
    parser.add_argument(
        "--index", type=int, help="draw test sentence number N (default: a short one with 2+ entities)"
    )
    parser.add_argument("--sentences", type=int, default=1000, help="test sentences for the statistics")
    parser.add_argument("-o", "--output", default="benchmarks/seq2seq_attention.png")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    models = {name: Seq2SeqAttnTagger.from_pretrained(RUNS_DIR / name).eval() for name in args.runs}
    print(
        "| run | feeds h_i | test sentences | attention on the tagged character | on it and its neighbours | steps "
        "whose largest weight is on it |"
    )
    print("|---|---|---|---|---|---|")
    for name, model in models.items():
        s = attention_stats(model, name, args.sentences)
        print(
            f"| {name} | {model.config.feed_encoder_state} | {s['sentences']} | {s['own']:.3f} | {s['near']:.3f} | "
            f"{100 * s['top']:.1f}% |"
        )

    font = use_cjk_font()
    tokenizer_name = args.runs[0]
    ids, mask, gold = pick_sentence(tokenizer_name, models[tokenizer_name], args.index)
    tokens = BertTokenizerFast.from_pretrained(RUNS_DIR / tokenizer_name).convert_ids_to_tokens(ids[0].tolist())
    chars = tokens[1:-1]
    fig, axes = plt.subplots(
        1, len(models), figsize=(0.26 * len(tokens) * len(models) + 2.5, 0.24 * len(chars) + 2.2), squeeze=False
    )
    for ax, (name, model) in zip(axes[0], models.items()):
        tags, attention = replay(model, ids, mask)
        predicted = [model.config.id2label[t] for t in tags[0, 1:-1].tolist()]
        ax.imshow(attention[0, : len(chars)].numpy(), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_yticks(range(len(chars)), [f"{c} {short_tag(t)}" for c, t in zip(chars, predicted)], fontsize=7)
        ax.set_xticks(range(len(tokens)), tokens, fontsize=6)
        wrong = sum(p != g for p, g in zip(predicted, gold))
        ax.set_title(
            f"{name}\nfeed_encoder_state={model.config.feed_encoder_state}, {wrong} of {len(chars)} tags wrong",
            fontsize=9,
        )
    fig.suptitle(
        "Seq2seq decoder attention a_it (eq. 7), greedy decoding: rows = decoder steps (character, predicted tag), "
        "columns = input tokens",
        fontsize=10,
    )
    save_figure(fig, args.output, f"font {font}")
    print("gold:", " ".join(f"{c}/{t}" for c, t in zip(chars, gold)))


if __name__ == "__main__":
    main()
