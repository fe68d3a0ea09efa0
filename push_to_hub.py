#!/usr/bin/env python
"""Turn a folder written by train.py into a Hugging Face Hub model repo, check it, and upload it.

    python push_to_hub.py outputs/cluener-memory --dry-run         # build hub_repo/ next to it and check it
    python push_to_hub.py outputs/cluener-memory --output_dir /tmp/repo --dry-run
    python push_to_hub.py outputs/cluener-memory --repo_id you/chinese-ner-memory [--token hf_...] [--private]

The repo folder holds what ``from_pretrained`` and ``pipeline`` need and nothing else:
``model.safetensors``, ``config.json`` with ``auto_map`` and ``custom_pipelines``, the modeling and
pipeline code (copied by ``register_for_auto_class`` / the pipeline registry), the tokenizer, the
training results (``all_results.json``) and a model card (``README.md``) whose metrics and
``model-index`` are read from those results. Before anything is uploaded, the folder is loaded in a
fresh offline subprocess with ``trust_remote_code=True`` and made to tag a sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from data_scripts.errors import UserError, run_command
from modeling.retrieval import CLASSIFIER_METHODS

CHECK_SENTENCE = "林晓梅是青禾科技的首席执行官，她昨天在杭州市西湖区发布了新产品。"

# how each corpus of train.py is named in the card: title, model-index dataset type, Hub dataset id of
# the same corpus (None when the Hub has none: CLUENER is not there, and the Hub's peoples_daily_ner is
# a different, pre-split release, not the raw January 1998 corpus split 80/20 here), note
DATASETS = {
    "cluener": (
        "CLUENER2020",
        "cluener2020",
        None,
        "the CLUE fine-grained NER set: 10 entity types, 10,748 training sentences; scores are on its dev set",
    ),
    "msra": (
        "MSRA NER",
        "levow/msra_ner",
        "levow/msra_ner",
        "SIGHAN 2006 MSRA: PER / LOC / ORG; standard train / test",
    ),
    "peoples_daily": (
        "People's Daily 1998 (January)",
        "peoples_daily_1998",
        None,
        "PKU-annotated People's Daily, January 1998: PER / LOC / ORG read from the POS tags (nr / ns / nt); seeded "
        "80/20 split",
    ),
    "sample": (
        "embedded sample",
        "sample",
        None,
        "the small original sample shipped with the code (a smoke test, not a benchmark)",
    ),
    "files": ("own files", "custom", None, "files given to train.py"),
}
MODELS = {
    "memory_ner": (
        "MemoryNetForTokenClassification",
        "the associated memory network: each sentence is tagged together with "
        "{num_memory} labelled training sentences retrieved from a memory bank saved in the model",
    ),
    "seq2seq_attn_ner": (
        "Seq2SeqAttnTagger",
        "BERT-Seq2Seq-Attention NER: BiLSTM encoder, attention, and an LSTM decoder fed the previous tag",
    ),
}
CITATIONS = """\
```bibtex
@article{associated_memory_ner,
  title = {Chinese Fine-Grained Name Entity Recognition Based on Associated Memory Networks
           (基于关联记忆网络的中文细粒度命名实体识别)}
}
@article{bert_seq2seq_attention_ner,
  title  = {基于 Seq2Seq 模型的命名实体识别方法},
  author = {王卫红 and 冯倩 and 吕红燕 and 曹玉辉}
}
```"""


class PushError(UserError):
    """A problem the user can fix, reported in one sentence."""


def read_results(model_dir: Path) -> dict:
    path = model_dir / "all_results.json"
    if not (model_dir / "config.json").exists():
        raise PushError(f"{model_dir} is not a model folder written by train.py (no config.json)")
    if not path.exists():
        raise PushError(f"{path} is missing: the model card's metrics come from train.py's results file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PushError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None


def evaluated_splits(results: dict) -> list[str]:
    """Splits with scores, the held-out test set first."""
    return [s for s in ("test", "validation") if f"{s}_f1" in results]


def model_index(name: str, results: dict, model_type: str) -> list[dict]:
    corpus = results.get("dataset", "files")
    title, dataset_type, _, _ = DATASETS.get(corpus, DATASETS["files"])
    entries = []
    for split in evaluated_splits(results):
        entries.append(
            {
                "task": {"type": "token-classification", "name": "Named Entity Recognition"},
                "dataset": {"name": title, "type": dataset_type, "split": split},
                "metrics": [
                    {
                        "type": metric,
                        "value": round(100 * results[f"{split}_{metric}"], 2),
                        "name": f"{split} {metric} (strict entity-level, %)",
                    }
                    for metric in ("f1", "precision", "recall")
                ],
            }
        )
    return [{"name": name, "results": entries}]


def input_features_text(config: dict, args: dict) -> str:
    """What the BiLSTM reads beside the characters, as the end of the card's encoder sentence ("" for nothing)."""
    reads = []
    if config.get("bigram_vocab_size"):
        reads.append(f"char bigrams ({config['bigram_vocab_size']} in its vocabulary)")
    if config.get("use_softword"):
        reads.append("each character's position in its word (softword)")
    if config.get("use_word_sets"):
        reads.append("the lexicon words that begin, continue, end or are each character (SoftLexicon word sets)")
    if not reads:
        return ""
    lexicon = args.get("lexicon", "jieba")
    source = "jieba's dictionary" if lexicon == "jieba" else f"`{Path(lexicon).name}`"
    text = ", and reads " + (", ".join(reads[:-1]) + " and " if len(reads) > 1 else "") + reads[-1]
    if config.get("use_softword") or config.get("use_word_sets"):
        text += f"; its lexicon ({config.get('lexicon_size')} words of {source}) is saved in the model"
    return text


def model_card(repo_name: str, config: dict, results: dict, license_: str) -> str:
    """The model card: YAML metadata (metrics from ``results``) and the text around them."""
    model_type = config.get("model_type", "")
    class_name, summary = MODELS.get(model_type, (config.get("architectures", ["?"])[0], ""))
    summary = summary.format(num_memory=config.get("num_memory"))
    corpus = results.get("dataset", "files")
    title, _, hub_dataset, corpus_note = DATASETS.get(corpus, DATASETS["files"])
    args = results.get("arguments", {})
    entity_types = sorted({label.split("-", 1)[1] for label in config.get("id2label", {}).values() if "-" in label})
    tags = [
        "token-classification",
        "ner",
        "chinese",
        "custom_code",
        "memory-network" if model_type == "memory_ner" else "seq2seq",
    ]
    meta = {
        "language": ["zh"],
        "license": license_,
        "library_name": "transformers",
        "pipeline_tag": "token-classification",
        "tags": tags,
        **({"datasets": [hub_dataset]} if hub_dataset else {}),  # only ids that exist on the Hub
        "metrics": ["f1", "precision", "recall"],
        "model-index": model_index(repo_name, results, model_type),
    }
    encoder = results.get("encoder") or config.get("encoder", "bilstm")
    encoder_text = (
        f"a character BiLSTM ({config.get('lstm_hidden_size')} per direction) over character embeddings"
        + (" initialised from the 200-d Tencent character vectors" if results.get("char_vectors") else "")
        + input_features_text(config, args)
        if encoder == "bilstm"
        else f"the pretrained encoder `{encoder}`"
    )
    lines = [
        "---",
        yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip(),
        "---",
        "",
        f"# {repo_name.split('/')[-1]}",
        "",
        f"Chinese named entity recognition with `{class_name}`: {summary}. Encoder: {encoder_text}. "
        f"Tags: {config.get('tag_scheme')} over {len(entity_types)} entity types ({', '.join(entity_types)}), "
        "one tag per character.",
        "",
        "## Usage",
        "",
        "The model and its `chinese-ner` pipeline are custom code, so pass `trust_remote_code=True`:",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'ner = pipeline("chinese-ner", model="{repo_name}", trust_remote_code=True)',
        f'ner("{CHECK_SENTENCE}")',
        "# [{'entity_group': ..., 'score': ..., 'word': ..., 'start': ..., 'end': ...}, ...]  offsets index the input "
        "string",
        "```",
        "",
        "Long text is read sentence by sentence (then by overlapping windows) and merged; a list of "
        "strings is tagged in batches (`batch_size=`)."
        + (
            " `return_memories=True` also returns the memory sentences each sentence was tagged with and the memory "
            "attention."
            if model_type == "memory_ner"
            else " `num_beams=4` decodes with a beam instead of greedily."
        ),
        "",
        "`AutoModelForTokenClassification.from_pretrained(..., trust_remote_code=True)` gives the model itself; "
        "`model.predict_tags(texts, tokenizer)` returns one tag per character.",
        "",
        "## Results",
        "",
        f"Strict entity-level scores (an entity counts only with exact boundaries and type), {title}, "
        "read from `all_results.json` of the training run:",
        "",
        "| split | sentences | precision | recall | F1 |",
        "|---|---|---|---|---|",
    ]
    for split in evaluated_splits(results):
        lines.append(
            f"| {split} | {results.get(f'{split}_examples', '')} | {100 * results[f'{split}_precision']:.2f} | "
            f"{100 * results[f'{split}_recall']:.2f} | {100 * results[f'{split}_f1']:.2f} |"
        )
    split = next(iter(evaluated_splits(results)), None)
    if split and results.get(f"{split}_per_type"):
        lines += [
            "",
            f"Per type ({split}):",
            "",
            "| type | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for etype, s in sorted(results[f"{split}_per_type"].items()):
            lines.append(
                f"| {etype} | {100 * s['precision']:.2f} | {100 * s['recall']:.2f} | {100 * s['f1']:.2f} | "
                f"{s.get('support', '')} |"
            )
    lines += ["", "## Training data and settings", "", f"- Data: {title}, {corpus_note}."]
    if args:
        keys = [
            "model_type",
            "encoder",
            "char_vectors",
            "lstm_hidden_size",
            "use_bigrams",
            "use_softword",
            "use_word_sets",
            "feature_projection_size",
            "hidden_dropout_prob",
            "use_self_attention",
            "num_memory",
            "memory_method",
            "type_classifier_kind",
            "type_classifier_encoder",
            "attention_score",
            "num_beams",
            "tag_scheme",
            "max_seq_length",
            "learning_rate",
            "encoder_learning_rate",
            "num_train_epochs",
            "per_device_train_batch_size",
            "seed",
        ]
        hidden = (
            {"attention_score", "num_beams"}
            if model_type == "memory_ner"
            else {"num_memory", "memory_method", "use_self_attention"}
        )
        if not (
            model_type == "memory_ner" and args.get("num_memory") and args.get("memory_method") in CLASSIFIER_METHODS
        ):
            hidden |= {"type_classifier_kind", "type_classifier_encoder"}
        if encoder != "bilstm":  # a pretrained encoder reads no input features
            hidden |= {"use_bigrams", "use_softword", "use_word_sets", "feature_projection_size"}
        shown = {k: args[k] for k in keys if k in args and k not in hidden and args[k] is not None}
        lines.append("- Arguments of `train.py`: " + ", ".join(f"`--{k} {v}`" for k, v in shown.items()) + ".")
    if "train_runtime" in results:
        lines.append(f"- Training time: {results['train_runtime'] / 60:.1f} min.")
    if results.get("memory"):
        mem = results["memory"]
        lines.append(
            f"- Memory: {mem.get('num_memory')} memory sentences per input, retrieved by `{mem.get('method')}`; "
            f"the bank ({config.get('memory_bank_size')} training sentences)"
            + (" and the entity-type classifier are" if mem.get("method") in CLASSIFIER_METHODS else " is")
            + " saved in the weights; `add_memories` extends the bank without retraining."
        )
    lines += [
        "",
        "## Limitations",
        "",
        "- One tag per character; text is normalised only as the tokenizer does (full-width, emoji and rare "
        "characters may be `[UNK]`).",
        "- Scores are for the corpus above. Other domains and entity types need retraining; the entity types are "
        "fixed by the training data.",
        "- `score` is the mean, over the entity's characters, of the probability of the chosen tag ("
        + (
            "the CRF's marginal p(y_i | x)"
            if model_type == "memory_ner"
            else "the decoder's softmax given its own previous tags"
        )
        + "): a confidence for ranking, not a calibrated probability.",
    ]
    if model_type == "memory_ner":
        lines.append(
            "- Memories come from the training bank inside the model: a sentence tagged with memory may show training "
            "sentences to the user."
        )
    if encoder == "bilstm":
        lines.append(
            "- This is the papers' non-pretrained tier (a character BiLSTM). Their headline numbers use BERT / "
            "RoBERTa-wwm encoders "
            "(`train.py --encoder hfl/chinese-roberta-wwm-ext`)."
        )
    lines += ["", "## Citation", "", "The two papers this code implements:", "", CITATIONS, ""]
    return "\n".join(lines)


def build_repo(model_dir: Path, out: Path, repo_name: str, license_: str) -> dict:
    """Write the Hub repo folder ``out`` from ``model_dir``; return the training results."""
    results = read_results(model_dir)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from modeling import ChineseNERPipeline  # registers the models and the pipeline

    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if out.exists():
        shutil.rmtree(out)
    ChineseNERPipeline(model=model, tokenizer=tokenizer).save_pretrained(
        out
    )  # weights, config + auto_map + custom_pipelines, code, tokenizer
    shutil.copy(model_dir / "all_results.json", out / "all_results.json")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    (out / "README.md").write_text(model_card(repo_name, config, results, license_), encoding="utf-8")
    return results


def verify(out: Path, timeout: int = 600) -> list[dict]:
    """Load ``out`` in a fresh offline process, outside this checkout, and tag a sentence."""
    script = (
        "import json, sys\n"
        "from transformers import pipeline\n"
        "ner = pipeline('chinese-ner', model=sys.argv[1], trust_remote_code=True)\n"
        "print(json.dumps(ner(sys.argv[2]), ensure_ascii=False))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(out.resolve()), CHECK_SENTENCE],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if proc.returncode != 0:
        raise PushError(f"the built folder {out} does not load and tag in a fresh process:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def upload(out: Path, repo_id: str, token: str | None, private: bool) -> str:
    from huggingface_hub import create_repo, upload_folder

    try:
        url = create_repo(repo_id, token=token, private=private, exist_ok=True)
        upload_folder(
            folder_path=str(out),
            repo_id=repo_id,
            token=token,
            commit_message="Upload Chinese NER model (push_to_hub.py)",
        )
    except Exception as err:  # offline, bad token, no permission: all end the same way for the user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PushError(
            f"could not upload to the Hub repo {repo_id!r} ({type(err).__name__}: {reason}); the checked folder is "
            f"{out}"
        ) from None
    return str(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path, help="a folder written by train.py")
    parser.add_argument("--repo_id", help="user/name on the Hub (needed to upload)")
    parser.add_argument(
        "--output_dir", type=Path, help="where to build the repo folder (default: <model_dir>/hub_repo)"
    )
    parser.add_argument(
        "--dry-run", "--dry_run", dest="dry_run", action="store_true", help="build and check the folder, do not upload"
    )
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the cached login)")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--license", default="apache-2.0")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.repo_id:
        parser.error("give --repo_id to upload, or --dry-run to only build and check the folder")

    out = args.output_dir or args.model_dir / "hub_repo"
    results = build_repo(args.model_dir, out, args.repo_id or args.model_dir.resolve().name, args.license)
    entities = verify(out)
    splits = (
        ", ".join(f"{s} F1 {100 * results[f'{s}_f1']:.2f}" for s in evaluated_splits(results)) or "no evaluated split"
    )
    print(f"built {out} ({splits}); a fresh offline process loaded it and tagged {CHECK_SENTENCE!r}:")
    print("  " + (", ".join(f"{e['word']}/{e['entity_group']}" for e in entities) or "(no entities)"))
    if not args.dry_run:
        print(f"uploaded: {upload(out, args.repo_id, args.token, args.private)}")
    return 0


if __name__ == "__main__":
    run_command(main, "push_to_hub.py")
