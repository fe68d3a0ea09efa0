"""Every standard transformers route keeps a model whole: fine-tuning and saving outside train.py keeps
the pipeline, the optimizer's learning-rate groups follow the pretrained encoder in both models,
train.py fine-tunes a saved tagger, and forward-time retrieval never hands a query its own labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertModel

from conftest import ROOT, run_train

sys.path.insert(0, str(ROOT))

import train  # noqa: E402
from data_scripts.corpora import load_corpus  # noqa: E402
from modeling import MemoryNetForTokenClassification, Seq2SeqAttnTagger  # noqa: E402

OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}

# The standard recipe of the transformers token-classification guide, run in a fresh process outside
# this repository: AutoModel + AutoTokenizer from the folder, labels aligned by word_ids(),
# DataCollatorForTokenClassification, Trainer, then save_pretrained of model and tokenizer.
FINE_TUNE = textwrap.dedent("""
    import json, sys
    from datasets import Dataset
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments)

    folder, train_file, out = sys.argv[1:4]
    model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = [json.loads(line) for line in open(train_file, encoding="utf-8")][:48]

    def tags_of(row):  # CLUENER spans -> BIOS tags, the model's scheme
        tags = ["O"] * len(row["text"])
        for etype, words in row["label"].items():
            for spans in words.values():
                for a, b in spans:
                    if a == b:
                        tags[a] = "S-" + etype
                    else:
                        tags[a:b + 1] = ["B-" + etype] + ["I-" + etype] * (b - a)
        return tags

    def encode(row):
        enc = tokenizer(list(row["text"]), is_split_into_words=True, truncation=True, max_length=64)
        tags, labels, previous = tags_of(row), [], None
        for word in enc.word_ids():
            labels.append(-100 if word is None or word == previous else model.config.label2id[tags[word]])
            previous = word
        enc["labels"] = labels
        return enc

    data = Dataset.from_list([dict(encode(row)) for row in rows])
    args = TrainingArguments(out + "/trainer", max_steps=12, per_device_train_batch_size=16, learning_rate=1e-4,
                             report_to=[], save_strategy="no", use_cpu=True, logging_steps=1)
    collator = DataCollatorForTokenClassification(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator)
    before = trainer.evaluate(data)["eval_loss"]
    trainer.train()
    after = trainer.evaluate(data)["eval_loss"]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(json.dumps({"loss_before": before, "loss_after": after}))
""")

TAG = textwrap.dedent("""
    import json, sys
    from transformers import pipeline
    ner = pipeline("chinese-ner", model=sys.argv[1], trust_remote_code=True)
    text = "王建国昨天在北京市海淀区见到了星海科技的总经理。"
    print(json.dumps({"entities": ner(text), "text": text}, ensure_ascii=False))
""")


@pytest.mark.slow
@pytest.mark.parametrize("run", ["memory_run", "seq2seq_run", "lexicon_run"])
def test_user_fine_tune_and_save_pretrained_keeps_the_pipeline(run, request, tmp_path):
    folder, _ = request.getfixturevalue(run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "fine_tune.py").write_text(FINE_TUNE, encoding="utf-8")
    (elsewhere / "tag.py").write_text(TAG, encoding="utf-8")
    out = tmp_path / "fine-tuned"
    proc = subprocess.run(
        [sys.executable, "fine_tune.py", str(folder), str(ROOT / "data_scripts/sample/train.json"), str(out)],
        cwd=elsewhere,
        env=OFFLINE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    losses = json.loads(proc.stdout.strip().splitlines()[-1])
    assert losses["loss_after"] < losses["loss_before"]  # it trained
    config = json.loads((out / "config.json").read_text())
    assert config["custom_pipelines"]["chinese-ner"]["impl"] == "pipeline_ner.ChineseNERPipeline"
    for declared in [config["custom_pipelines"]["chinese-ner"]["impl"], *config["auto_map"].values()]:
        assert (out / f"{declared.split('.')[0]}.py").is_file(), (
            declared
        )  # every file the config names is in the folder

    proc = subprocess.run(
        [sys.executable, "tag.py", str(out)], cwd=elsewhere, env=OFFLINE, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    label_types = {label.split("-", 1)[1] for label in config["id2label"].values() if label != "O"}
    for entity in result["entities"]:
        assert entity["entity_group"] in label_types
        assert result["text"][entity["start"] : entity["end"]] == entity["word"]


def captured_optimizers(monkeypatch, argv: list[str]) -> list[tuple[torch.nn.Module, dict[int, float]]]:
    """Run ``train.py ARGV`` in this process; for every optimizer it built, the model and each
    parameter's learning rate as built (the scheduler changes them later)."""
    built = []
    original = train.build_optimizer

    def spy(model, args, encoder_lr):
        optimizer = original(model, args, encoder_lr)
        built.append((model, {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}))
        return optimizer

    monkeypatch.setattr(train, "build_optimizer", spy)
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    train.main()
    return built


@pytest.mark.parametrize("model_type", ["memory", "seq2seq"])
def test_the_pretrained_encoder_and_only_it_trains_at_the_encoder_learning_rate(
    model_type, tiny_bert_dir, tmp_path, monkeypatch
):
    argv = [
        "--model_type", model_type, "--encoder", str(tiny_bert_dir), "--encoder_learning_rate", "3e-5",
        "--learning_rate", "1e-3", "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
        "--load_best_model_at_end", "false", "--type_classifier_epochs", "1", "--max_eval_samples", "8",
        "--output_dir", str(tmp_path / "run"), "--disable_tqdm", "true",
    ]  # fmt: skip
    if model_type == "memory":  # category retrieval: the type classifier's own fits build optimizers too
        argv += ["--memory_method", "category"]
    built = captured_optimizers(monkeypatch, argv)
    kinds = [type(model).__name__ for model, _ in built]
    # the memory network's category retrieval trains its type classifier first (a final one and two out-of-fold ones)
    assert kinds[-1] == {"memory": "MemoryNetForTokenClassification", "seq2seq": "Seq2SeqAttnTagger"}[model_type]
    for model, lr_of in built:
        bert = {id(p) for module in model.modules() if isinstance(module, BertModel) for p in module.parameters()}
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert bert and set(lr_of) == {id(p) for p in trainable}
        for p in trainable:
            assert lr_of[id(p)] == (3e-5 if id(p) in bert else 1e-3)


def test_fine_tune_a_saved_model_with_the_same_labels_keeps_every_weight(memory_run, tmp_path):
    folder, _ = memory_run
    out = tmp_path / "same-labels"
    results = run_train(
        [
            "--model_name_or_path", str(folder), "--max_train_samples", "50", "--learning_rate", "0",
            "--max_steps", "2", "--save_strategy", "no", "--load_best_model_at_end", "false",
            "--output_dir", str(out),
        ]
    )  # fmt: skip
    before, after = load_file(folder / "model.safetensors"), load_file(out / "model.safetensors")
    weights = [k for k in before if not k.startswith("memory_bank.")]
    assert weights and all(torch.equal(before[k], after[k]) for k in weights)
    # the bank holds the new training sentences: the first 50 of the sample
    raw = load_corpus("sample", None, "BIOS", 62)
    config = json.loads((out / "config.json").read_text())
    assert config["memory_bank_size"] == 50 == after["memory_bank.lengths"].shape[0]
    model = MemoryNetForTokenClassification.from_pretrained(out)
    assert model.memory_bank.sentence_texts() == ["".join(t) for t in raw["train"]["tokens"][:50]]
    assert results["validation_f1"] > 0


def write_bio_columns(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.write_text("\n\n".join("\n".join(f"{c} {t}" for c, t in s) for s in sentences) + "\n", encoding="utf-8")
    return path


def person_place_corpus(tmp_path: Path) -> dict[str, Path]:
    """A small BIO column corpus with other entity types (PER, LOC) than the sample's ten."""

    def sentence(name: str, place: str) -> list[tuple[str, str]]:
        chars = [(c, ("B-PER" if i == 0 else "I-PER")) for i, c in enumerate(name)] + [("在", "O")]
        chars += [(c, ("B-LOC" if i == 0 else "I-LOC")) for i, c in enumerate(place)] + [
            ("工", "O"),
            ("作", "O"),
            ("。", "O"),
        ]
        return chars

    names, places = (
        ["张伟", "李娜", "王小明", "赵丽", "陈刚", "刘洋"],
        ["北京", "上海市", "广州", "杭州", "成都市", "南京"],
    )
    train_sents = [sentence(n, p) for n in names for p in places[:4]]
    dev_sents = [sentence(n, p) for n, p in zip(names, places[4:] * 3)]
    return {
        "train": write_bio_columns(tmp_path / "train.txt", train_sents),
        "dev": write_bio_columns(tmp_path / "dev.txt", dev_sents),
    }


def test_fine_tune_a_saved_model_on_other_labels(memory_run, tmp_path):
    folder, _ = memory_run
    files = person_place_corpus(tmp_path)
    common = [
        sys.executable, str(ROOT / "train.py"), "--model_name_or_path", str(folder), "--dataset", "files",
        "--train_file", str(files["train"]), "--validation_file", str(files["dev"]), "--disable_tqdm", "true",
        "--save_strategy", "no", "--load_best_model_at_end", "false", "--learning_rate", "0",
        "--max_steps", "2",
    ]  # fmt: skip
    proc = subprocess.run(
        [*common, "--output_dir", str(tmp_path / "refused")],
        cwd=ROOT,
        env=OFFLINE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    message = proc.stderr.strip().splitlines()[-1]
    assert (
        message.startswith("train.py: error: --model_name_or_path")
        and "--ignore_mismatched_sizes" in message
        and "B-LOC" in message
    )

    out = tmp_path / "other-labels"
    proc = subprocess.run(
        [*common, "--ignore_mismatched_sizes", "true", "--output_dir", str(out)],
        cwd=ROOT,
        env=OFFLINE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    config = json.loads((out / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O", "S-LOC", "S-PER"]
    before, after = load_file(folder / "model.safetensors"), load_file(out / "model.safetensors")
    kept = [k for k in before if k.startswith(("encoder.", "self_attention."))]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)  # lr 0: the encoder is the saved one
    assert after["classifier.weight"].shape[0] == 7 and after["label_embeddings.weight"].shape[0] == 7
    assert after["crf.crf.transitions"].shape == (7, 7)
    # the bank is the new training set, its labels in the new label set
    model = MemoryNetForTokenClassification.from_pretrained(out)
    assert len(model.memory_bank) == 24 and model.memory_bank.sentence_texts()[0] == "张伟在北京工作。"
    first = [model.config.id2label[t] for t in model.memory_bank.labels[0].tolist() if t != -100]
    assert first == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O"]


def test_seq2seq_reset_labels_renews_only_the_label_layers(seq2seq_run):
    folder, _ = seq2seq_run
    model = Seq2SeqAttnTagger.from_pretrained(folder)
    encoder, bilstm = model.encoder.embeddings.weight.clone(), model.encoder.lstm.weight_ih_l0.clone()
    model.reset_labels({0: "O", 1: "B-PER", 2: "I-PER", 3: "E-PER"})
    assert model.classifier.out_features == 4 and model.tag_embeddings.num_embeddings == 5
    assert torch.equal(model.encoder.embeddings.weight, encoder) and torch.equal(
        model.encoder.lstm.weight_ih_l0, bilstm
    )
    ids = torch.tensor([[101, 2476, 839, 1762, 102]])
    tags = model(ids, return_tags=True).tags[0, 1:-1].tolist()
    assert all(0 <= t < 4 for t in tags)


@pytest.mark.parametrize("method", ["pos_edit", "random", "lexical", "entity"])
def test_forward_time_retrieval_in_training_never_returns_the_query_text(memory_run, method):
    folder, _ = memory_run
    model = MemoryNetForTokenClassification.from_pretrained(folder)
    model.train()
    raw = load_corpus("sample", None, "BIOS", 62)
    texts = ["".join(t) for t in raw["train"]["tokens"]]  # the bank's sentences, from the corpus itself
    bank = model.memory_bank
    ids, mask, _ = bank.gather(torch.arange(len(bank))[:, None])
    memory_ids = model.retrieve_memories(ids[:, 0], mask[:, 0], method=method)
    assert memory_ids.shape == (len(texts), model.config.num_memory)
    for query, row in zip(texts, memory_ids.tolist()):
        assert all(texts[j] != query for j in row)
