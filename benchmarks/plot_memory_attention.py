#!/usr/bin/env python
"""Heat map of the memory attention M_j (paper eqs. 3-5, figures 6-7) of one sentence against its memories.

The ``chinese-ner`` pipeline retrieves the memories (the model's own method and saved bank), tags
the sentence and returns M_j (``return_memories=True``). One panel per memory: rows are the sentence's characters (with
the predicted tag),
columns the memory's characters (with its gold tag).

    python benchmarks/plot_memory_attention.py benchmarks/runs/memory-category-s1 -o benchmarks/memory_attention.png
    python benchmarks/plot_memory_attention.py MODEL_DIR --sentence "..." -o attention.png
    python benchmarks/plot_memory_attention.py MODEL_DIR --dev_index 17    # a CLUENER dev sentence

Needs a font with Chinese characters (``apt-get install fonts-wqy-microhei`` or ``fonts-noto-cjk``).
"""

from __future__ import annotations

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import BertTokenizerFast  # noqa: E402

from common import save_figure, short_tag, use_cjk_font  # noqa: E402

from data_scripts.features import default_data_dir  # noqa: E402
from data_scripts.readers import read_cluener  # noqa: E402
from modeling import ChineseNERPipeline, MemoryNetForTokenClassification  # noqa: E402
from modeling.char_tokenization import encode_chars  # noqa: E402
from modeling.tag_schemes import spans_to_tags  # noqa: E402


def default_sentence(index: int | None) -> str:
    """CLUENER dev sentence ``index``, or by default the first short one with three or more entities."""
    dev = read_cluener(default_data_dir() / "cluener", splits=("dev",))["dev"]
    names = dev.features["ner_tags"].feature.names
    if index is not None:
        return "".join(dev[index]["tokens"])
    for row in dev:
        if 14 <= len(row["tokens"]) <= 26 and sum(names[t].startswith(("B-", "S-")) for t in row["ner_tags"]) >= 3:
            return "".join(row["tokens"])
    return "".join(dev[0]["tokens"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a trained memory model folder (num_memory > 0)")
    parser.add_argument("--sentence", help="the sentence to show (default: a CLUENER dev sentence)")
    parser.add_argument("--dev_index", type=int, help="show CLUENER dev sentence number N")
    parser.add_argument("-o", "--output", default="benchmarks/memory_attention.png")
    args = parser.parse_args()

    model = MemoryNetForTokenClassification.from_pretrained(args.model_dir).eval()
    if model.config.num_memory == 0:
        sys.exit(f"{args.model_dir} has num_memory=0: it has no memory attention to draw")
    ner = ChineseNERPipeline(model=model, tokenizer=BertTokenizerFast.from_pretrained(args.model_dir))
    font = use_cjk_font()
    text = args.sentence or default_sentence(args.dev_index)
    text = text[: model.config.max_length - 2]  # one window
    out = ner(text, return_memories=True)  # the pipeline retrieves, tags and returns M_j per memory
    chars = list(text)
    tags = spans_to_tags(
        [(e["entity_group"], e["start"], e["end"]) for e in out["entities"]], len(chars), model.config.tag_scheme
    )
    memories = out["windows"][0]["memories"]
    bank = model.memory_bank
    types = model.config.entity_types

    n = len(memories)
    cols = 2 if n > 1 else 1
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, (0.24 * len(chars) + 1.6) * rows + 0.6), squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.axis("off")
            continue
        memory = memories[j]
        weights = np.array(memory["attention"])  # [sentence characters, memory characters]
        ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=max(float(weights.max()), 1e-6), aspect="auto")
        ax.set_yticks(range(len(chars)), [f"{c} {short_tag(t)}" for c, t in zip(chars, tags)], fontsize=7)
        ax.set_xticks(
            range(len(memory["text"])),
            [f"{c}\n{short_tag(t)}" if t != "O" else c for c, t in zip(memory["text"], memory["tags"])],
            fontsize=6,
            rotation=0,
        )
        mem_types = [t for t, on in zip(types, bank.types[memory["bank_index"]].tolist()) if on]
        ax.set_title(
            f"memory {j + 1}: bank sentence {memory['bank_index']} (types: {', '.join(mem_types) or 'none'})",
            fontsize=9,
        )
    enc = encode_chars(ner.tokenizer, [chars], model.config.max_length)
    input_ids, attention_mask = torch.tensor(enc["input_ids"]), torch.tensor(enc["attention_mask"])
    predicted = (
        [t for t, on in zip(types, model.predict_entity_types(input_ids, attention_mask)[0].tolist()) if on]
        if model.type_classifier
        else None
    )
    subtitle = f"retrieval: {model.config.memory_method}" + (
        f", predicted types: {', '.join(predicted) or 'none'}" if predicted is not None else ""
    )
    fig.suptitle(f"Memory attention M_j (eqs. 3-5) of 「{text}」\n{subtitle}", fontsize=11)
    save_figure(fig, args.output, f"{n} memories, font {font}")
    print("sentence:", " ".join(f"{c}/{t}" for c, t in zip(chars, tags)))


if __name__ == "__main__":
    main()
