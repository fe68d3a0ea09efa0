#!/usr/bin/env python
"""Teaching a trained model new entities with no retraining: by labelled sentences (``add_memories``), by a typed
dictionary read through memory (``add_entities``), and by the same dictionary forced (``force_entities``).

A corpus's train split is cut into halves T1 / T2 (seeded; identical texts stay in one half). The models train on
T1 alone (the memory network's bank holds T1). Then each route adds T2 and the evaluation split is tagged again:
T2's labelled sentences; **T2's entity strings with their majority type in T2, no sentences** (the dictionary),
read through memory in each memory form (``entity_dictionary.ENTITY_MEMORY_FORMS``), with and without
``taught_entities_only`` (and, on an encoder that reads a lexicon, without ``taught_entities_in_lexicon``), or
forced by longest match;
and, as the upper bound, the same model retrained on all of train. Scores: overall P / R / F1, and the recall of
the entities whose string is an entity in T2 but not in T1 (what only the added half can teach).

    python benchmarks/editable_memory.py --corpus cluener --train [--parallel 2]   # write T1/T2, train the runs
    python benchmarks/editable_memory.py --corpus cluener                          # score every route
    python benchmarks/editable_memory.py --corpus msra --retrained-only            # only the upper bound
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from common import ENCODER_FEATURES, RUNS_DIR, markdown_table, results, run_all

from data_scripts.corpora import load_corpus  # noqa: E402
from data_scripts.metrics import entity_metrics  # noqa: E402
from modeling import MemoryNetForTokenClassification  # noqa: E402
from modeling.entity_dictionary import ENTITY_MEMORY_FORMS, DictionaryMatcher, force_matches  # noqa: E402
from modeling.tag_schemes import spans_to_tags, tags_to_spans  # noqa: E402

SCHEME = "BIOS"  # the memory network's default scheme, in which the halves are written
# per corpus: the split that is scored (written beside the halves, as train.py reads one format per run), and the
# epochs; MSRA without a dev split selects the epoch on train.py's held-out share of the train file
CORPORA = {"cluener": {"split": "validation", "num_train_epochs": 8}, "msra": {"split": "test", "num_train_epochs": 4}}
COMMON = {"char_vectors": "tencent", "use_self_attention": True, "tag_scheme": SCHEME, "seed": 1}
MODELS = {  # name -> train.py flags
    "entity": {"num_memory": 4, "memory_method": "entity"},
    # trained to read entities it has never seen from its memories (modeling_memory_ner.swap_shared_entities)
    "entity_swap50": {"num_memory": 4, "memory_method": "entity", "memory_entity_swap_prob": 0.5},
    # the same on the encoder with char bigrams, softword and word sets (issue 45), whose lexicon the taught
    # entities also enter
    "entity_swap50_features": {
        "num_memory": 4, "memory_method": "entity", "memory_entity_swap_prob": 0.5, **ENCODER_FEATURES,
    },
}  # fmt: skip
HALVES = ("T1", "all")  # trained on T1, or on all of train (the upper bound)


def run_name(corpus: str, model: str, half: str) -> str:
    return f"editable-{corpus}-{model}-{half}-s1"


def split_dir(corpus: str) -> Path:
    return RUNS_DIR / f"editable-split-{corpus}"


def write_halves(corpus: str, seed: int = 0) -> dict[str, Path]:
    """The corpus's train split -> column files T1 / T2 / all (``char<TAB>tag`` in ``SCHEME``), T1 and T2 halves of
    the distinct texts drawn with ``seed``; and the scored split (``eval``)."""
    folder = split_dir(corpus)
    paths = {half: folder / f"{half}.tsv" for half in ("T1", "T2", "all", "eval")}
    if all(path.exists() for path in paths.values()):  # written once: runs may be reading them
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    corpus_splits = load_corpus(corpus, None, SCHEME, 62)
    train = corpus_splits["train"]
    names = train.features["ner_tags"].feature.names
    texts = ["".join(t) for t in train["tokens"]]
    distinct = sorted(set(texts))
    order = np.random.default_rng(seed).permutation(len(distinct))
    first = {distinct[i] for i in order[: len(distinct) // 2]}
    files = {half: open(path, "w", encoding="utf-8") for half, path in paths.items()}
    for text, tokens, tags in zip(texts, train["tokens"], train["ner_tags"]):
        block = "".join(f"{c}\t{names[t]}\n" for c, t in zip(tokens, tags)) + "\n"
        files["T1" if text in first else "T2"].write(block)
        files["all"].write(block)
    scored = corpus_splits[CORPORA[corpus]["split"]]
    for tokens, tags in zip(scored["tokens"], scored["ner_tags"]):
        files["eval"].write("".join(f"{c}\t{names[t]}\n" for c, t in zip(tokens, tags)) + "\n")
    for f in files.values():
        f.close()
    return paths


def run_arguments(corpus: str, paths: dict[str, Path]) -> dict[str, dict]:
    spec = CORPORA[corpus]
    return {
        run_name(corpus, model, half): {
            "dataset": "files", "train_file": paths[half], f"{spec['split']}_file": paths["eval"], **COMMON,
            "num_train_epochs": spec["num_train_epochs"], **flags,
        }
        for model, flags in MODELS.items() for half in HALVES
    }  # fmt: skip


def labelled(path: Path) -> tuple[list[str], list[list[str]]]:
    """Texts and tag strings of a halves file."""
    texts, tags, chars, row = [], [], [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            if chars:
                texts.append("".join(chars))
                tags.append(row)
            chars, row = [], []
            continue
        char, tag = line.rsplit("\t", 1)
        chars.append(char)
        row.append(tag)
    return texts, tags


def entity_strings(texts, tags) -> Counter:
    """(string, type) -> how often it is labelled."""
    return Counter(
        (text[s.start : s.end], s.type) for text, row in zip(texts, tags) for s in tags_to_spans(row, SCHEME)
    )


def dictionary_of(texts, tags) -> dict[str, str]:
    """Each entity string of these sentences with its majority type (ties: the first type in sorted order)."""
    by_string: dict[str, Counter] = {}
    for (string, etype), n in entity_strings(texts, tags).items():
        by_string.setdefault(string, Counter())[etype] += n
    return {s: min(types, key=lambda t: (-types[t], t)) for s, types in sorted(by_string.items())}


def score(model, tokenizer, texts, gold, only_t2: set[str], force: dict[str, str] | None = None) -> dict:
    """P / R / F1 of ``model`` on raw ``texts`` (retrieval inside the call), and its recall of the gold entities
    whose string is only in T2; ``force``: that dictionary's longest matches override the model."""
    pred = model.predict_tags(texts, tokenizer, batch_size=64)
    if force:
        matcher = DictionaryMatcher()
        forced = []
        for text, row in zip(texts, pred):
            entities = [
                {"entity_group": s.type, "start": s.start, "end": s.end}
                for s in tags_to_spans(row, SCHEME, strict=False)
            ]
            entities = force_matches(text, entities, matcher.matches(text, force))
            forced.append(
                spans_to_tags([(e["entity_group"], e["start"], e["end"]) for e in entities], len(text), SCHEME)
            )
        pred = forced
    scores = entity_metrics(gold, pred, SCHEME)
    new = [[s for s in tags_to_spans(g, SCHEME) if text[s.start : s.end] in only_t2] for text, g in zip(texts, gold)]
    hits = sum(len(set(spans) & set(tags_to_spans(p, SCHEME, strict=False))) for spans, p in zip(new, pred))
    total = sum(map(len, new))
    return {"p": 100 * scores["precision"], "r": 100 * scores["recall"], "f1": 100 * scores["f1"],
            "t2_recall": 100 * hits / max(total, 1), "t2_entities": total}  # fmt: skip


def load(name: str):
    """A finished run's model (eval mode) and tokenizer, or None."""
    if results(name) is None:
        print(f"{name}: not run")
        return None
    folder = RUNS_DIR / name
    return MemoryNetForTokenClassification.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs="+", choices=list(CORPORA), default=["cluener"])
    parser.add_argument("--train", action="store_true", help="write T1/T2 and train the runs that have not finished")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--halves", nargs="+", choices=HALVES, default=list(HALVES))
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument(
        "--retrained-only", action="store_true", help="score only the runs retrained on all of train (the last row)"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.train:
        runs = {}
        for corpus in args.corpus:
            every = run_arguments(corpus, write_halves(corpus))
            runs.update(
                {run_name(corpus, m, h): every[run_name(corpus, m, h)] for h in args.halves for m in args.models}
            )
        run_all(runs, args.parallel, "editable-memory runs")
        return
    for corpus in args.corpus:
        print(table(corpus, args.models, args.retrained_only))


def table(corpus: str, models: list[str], retrained_only: bool = False) -> str:
    """Every route on ``corpus``'s scored split, for the T1 runs of ``models`` that have finished, and the same
    models retrained on all of train (``retrained_only``: these alone)."""
    paths = write_halves(corpus)
    t1, t2 = labelled(paths["T1"]), labelled(paths["T2"])
    dictionary = dictionary_of(*t2)
    only_t2 = {s for s, _ in entity_strings(*t2)} - {s for s, _ in entity_strings(*t1)}
    texts, gold = labelled(paths["eval"])
    print(
        f"{corpus}: T1 {len(t1[0])} / T2 {len(t2[0])} sentences; the dictionary: {len(dictionary)} strings of T2, "
        f"{len(only_t2)} of them not entities in T1"
    )
    rows = []

    def row(label: str, model, tokenizer, force=None) -> None:
        r = score(model, tokenizer, texts, gold, only_t2, force)
        rows.append(
            [
                label,
                f"{r['p']:.2f}",
                f"{r['r']:.2f}",
                f"**{r['f1']:.2f}**",
                f"{r['t2_recall']:.2f} (of {r['t2_entities']})",
            ]
        )
        print(rows[-1], flush=True)

    for model_name in models:
        name = run_name(corpus, model_name, "T1")
        if not retrained_only and (trained := load(name)) is not None:
            row(f"{model_name}, trained on T1: nothing added", *trained)
            model, tokenizer = load(name)  # each route starts from the saved model
            model.add_memories(t2[0], t2[1], tokenizer)
            row(f"{model_name}: T2's sentences added (`add_memories`)", model, tokenizer)
            for form in ENTITY_MEMORY_FORMS:
                model, tokenizer = load(name)
                model.add_entities(dictionary, tokenizer, memory_form=form)
                row(f"{model_name}: the dictionary through memory (`add_entities`, {form})", model, tokenizer)
                if getattr(model.encoder, "features", None) is not None and model.encoder.features.reads_lexicon:
                    model.config.taught_entities_in_lexicon = False
                    row(f"{model_name}: the same, the taught strings not in the lexicon features "
                        "(`taught_entities_in_lexicon=False`)", model, tokenizer)  # fmt: skip
                    model.config.taught_entities_in_lexicon = True
                model.config.taught_entities_only = False
                row(f"{model_name}: the same, the whole reading with the memories (`taught_entities_only=False`)",
                    model, tokenizer)  # fmt: skip
            row(f"{model_name}: the dictionary forced (`force_entities=True`)", *load(name), force=dictionary)
        full = load(run_name(corpus, model_name, "all"))
        if full is not None:
            row(f"{model_name}, retrained on all of train", *full)
    return markdown_table(["model and route", "P", "R", "F1", "recall, entities only in T2"], rows)


if __name__ == "__main__":
    main()
