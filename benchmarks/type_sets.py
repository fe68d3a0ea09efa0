#!/usr/bin/env python
"""Which entity types does a CLUENER dev sentence contain? Micro P/R/F1 of the predicted type sets
against the gold ones, from every source a finished run offers:

* ``classifier``: the multi-label type classifier of a memory+category run (what retrieval uses);
* ``tagger``: the types of the entities the run's own tagger finds (any run, e.g. the baseline);
* ``union`` / ``intersection`` of the two, when a run has both.

It tells whether a tagger's output would be a better query type set for category retrieval than
the classifier's (the memory network's accuracy follows the query types: oracle types +7.65 F1).

    python benchmarks/type_sets.py benchmarks/runs/memory-baseline-s1 benchmarks/runs/memory-category-s1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import common  # noqa: E402, F401  (puts the repository on sys.path)

from data_scripts.corpora import load_corpus  # noqa: E402
from data_scripts.memory_data import type_matrix  # noqa: E402
from data_scripts.metrics import multilabel_scores  # noqa: E402
from modeling import MemoryNetForTokenClassification  # noqa: E402
from modeling.char_tokenization import encode_chars  # noqa: E402
from modeling.tag_schemes import tags_to_spans  # noqa: E402


def type_sets(folder: Path, batch_size: int = 64) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """``(entity types, gold [sentences, types], {source: predicted [sentences, types]})`` on dev."""
    from transformers import BertTokenizerFast

    model = MemoryNetForTokenClassification.from_pretrained(folder).eval()
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    scheme, names = model.config.tag_scheme, model.config.entity_types
    dev = load_corpus("cluener", scheme=scheme, max_chars=model.config.max_length - 2)["validation"]
    label_names = dev.features["ner_tags"].feature.names
    gold = type_matrix([tags_to_spans([label_names[t] for t in tags], scheme) for tags in dev["ner_tags"]], names)
    tagged, classified = [], []
    for i in tqdm(range(0, len(dev), batch_size), desc=f"{folder.name}: dev type sets"):
        enc = encode_chars(tokenizer, dev["tokens"][i : i + batch_size], model.config.max_length)
        width = max(len(ids) for ids in enc["input_ids"])
        input_ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in enc["input_ids"]])
        attention_mask = (input_ids != tokenizer.pad_token_id).long()
        for ids in model.decode(input_ids, attention_mask):
            tagged.append(tags_to_spans([model.config.id2label[t] for t in ids], scheme, strict=False))
        if model.type_classifier is not None:
            classified.append(model.predict_entity_types(input_ids, attention_mask).numpy())
    sources = {"tagger": type_matrix(tagged, names)}
    if classified:
        sources["classifier"] = np.concatenate(classified).astype(np.uint8)
        sources["union"] = sources["classifier"] | sources["tagger"]
        sources["intersection"] = sources["classifier"] & sources["tagger"]
    return names, gold, sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs", nargs="+", type=Path, help="finished train.py output folders of CLUENER memory-network runs"
    )
    args = parser.parse_args()
    rows = [
        "| run | type source | sentences | P | R | micro F1 | sentences with exactly the gold types |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in args.runs:
        names, gold, sources = type_sets(folder)
        for source, pred in sources.items():
            micro = multilabel_scores(gold, pred, names)["micro"]
            exact = float((pred == gold).all(axis=1).mean())
            rows.append(
                f"| {folder.name} | {source} | {len(gold)} | {100 * micro['precision']:.2f} | "
                f"{100 * micro['recall']:.2f} | "
                f"**{100 * micro['f1']:.2f}** | {100 * exact:.1f}% |"
            )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
