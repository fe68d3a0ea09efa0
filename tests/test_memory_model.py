"""The memory model end to end: collator, bank saved with the model, automatic retrieval, cache."""

import contextlib
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertTokenizerFast

from data_scripts.sample import CLUENER_TYPES, SAMPLE_DIR
from conftest import ROOT, run_fresh_process, run_train
from data_scripts.collator import DataCollatorForMemoryNER
from modeling import MemoryNetConfig, MemoryNetForTokenClassification
from modeling.modeling_memory_ner import swap_shared_entities
from test_model import FRESH, TEXTS


def test_bank_travels_with_the_model_and_fresh_process_predictions_match(memory_run, tmp_path):
    folder, _ = memory_run
    config = json.loads((folder / "config.json").read_text())
    assert config["num_memory"] == 2 and config["memory_bank_size"] == 204  # the sample's training sentences
    model = MemoryNetForTokenClassification.from_pretrained(folder)
    saved = load_file(folder / "model.safetensors")
    assert saved.keys() == model.state_dict().keys()  # bank buffers included
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())  # nothing re-initialised on load
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    expected = model.predict_tags(TEXTS[:2], tokenizer)  # memories retrieved from the saved bank
    lines = run_fresh_process(FRESH, str(folder), json.dumps(TEXTS[:2]), cwd=tmp_path)
    assert json.loads(lines[-1])["tags"] == expected


def test_cached_bank_encodings_equal_fresh_ones(memory_run):
    folder, _ = memory_run
    model = MemoryNetForTokenClassification.from_pretrained(folder).eval()
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    enc = tokenizer(
        [list("我在北京工作"), list("张三加入了华为")], is_split_into_words=True, padding=True, return_tensors="pt"
    )
    memory_ids = model.retrieve_memories(enc["input_ids"], enc["attention_mask"])
    assert memory_ids.shape == (2, 2)
    mem = model.memory_bank.gather(memory_ids)
    with torch.no_grad():
        direct = model(
            enc["input_ids"],
            enc["attention_mask"],
            memory_input_ids=mem[0],
            memory_attention_mask=mem[1],
            memory_tag_ids=mem[2],
        )
        cached = model(enc["input_ids"], enc["attention_mask"], memory_ids=memory_ids)
        again = model(enc["input_ids"], enc["attention_mask"], memory_ids=memory_ids)
    assert len(model.memory_cache) > 0
    assert torch.allclose(direct.logits, cached.logits, atol=1e-5) and torch.equal(cached.logits, again.logits)
    model.train()
    assert len(model.memory_cache) == 0  # weights may change: the cache is dropped


def test_bank_pos_strings_are_decoded_once_and_follow_the_buffer():
    """Raw-input retrieval reads the bank's POS strings on every call: they are decoded once, and
    decoded again whenever the buffer changes (fill, load_state_dict)."""
    from modeling.memory_bank import MemoryBank

    bank = MemoryBank(size=2, length=4, pos_length=3, num_types=1)
    bank.fill([[2, 5, 3], [2, 6, 3]], [[-100, 0, -100]] * 2, [[0], [1]], ["ab", "c"])
    first = bank.pos_strings()
    assert first == ["ab", "c"] and bank.pos_strings() is first  # not decoded again
    bank.fill([[2, 5, 3], [2, 6, 3]], [[-100, 0, -100]] * 2, [[0], [1]], ["x", "yz"])
    assert bank.pos_strings() == ["x", "yz"]
    other = MemoryBank(size=2, length=4, pos_length=3, num_types=1)
    other.fill([[2, 5, 3], [2, 6, 3]], [[-100, 0, -100]] * 2, [[0], [1]], ["p", "q"])
    bank.load_state_dict(other.state_dict())
    assert bank.pos_strings() == ["p", "q"]
    bank.load_state_dict(
        MemoryBank(size=2, length=4, pos_length=3, num_types=1).state_dict(), assign=True
    )  # a new tensor
    assert bank.pos_strings() == ["", ""]


def test_collator_shapes_and_masks(memory_run):
    folder, _ = memory_run
    model = MemoryNetForTokenClassification.from_pretrained(folder)
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    collator = DataCollatorForMemoryNER(tokenizer, bank=model.memory_bank)
    features = [
        {"input_ids": [2, 10, 11, 3], "attention_mask": [1] * 4, "labels": [-100, 0, 0, -100], "memory_ids": [0, 5]},
        {"input_ids": [2, 12, 3], "attention_mask": [1] * 3, "labels": [-100, 0, -100], "memory_ids": [7, 9]},
    ]
    batch = collator(features)
    n_len = int(model.memory_bank.lengths[[0, 5, 7, 9]].max())
    assert batch["input_ids"].shape == (2, 4) and batch["memory_ids"].tolist() == [[0, 5], [7, 9]]
    assert (
        batch["memory_input_ids"].shape
        == batch["memory_attention_mask"].shape
        == batch["memory_tag_ids"].shape
        == (2, 2, n_len)
    )
    for b, ids in enumerate([[0, 5], [7, 9]]):
        for j, idx in enumerate(ids):
            length = int(model.memory_bank.lengths[idx])
            assert batch["memory_attention_mask"][b, j].tolist() == [1] * length + [0] * (n_len - length)
            assert (batch["memory_tag_ids"][b, j, length:] == -100).all() and batch["memory_tag_ids"][b, j, 0] == -100


@pytest.mark.slow
def test_category_retrieval_trains_and_stores_the_type_classifier(tmp_path):
    out = tmp_path / "category"
    results = run_train(
        [
            "--output_dir", str(out), "--num_memory", "2", "--memory_method", "category",
            "--num_train_epochs", "2", "--type_classifier_epochs", "3", "--lstm_hidden_size", "32",
            "--save_strategy", "no", "--load_best_model_at_end", "false",
        ]
    )  # fmt: skip
    report = results["type_classifier_validation"]
    assert set(report) == {*CLUENER_TYPES, "micro"}  # the sample's ten types
    assert "entity-type classifier on validation" in results["_stdout"]
    model, info = MemoryNetForTokenClassification.from_pretrained(out, output_loading_info=True)
    assert (
        not info["missing_keys"] and not info["unexpected_keys"]
    )  # classifier and bank were saved, nothing re-initialised
    assert any(k.startswith("type_classifier.") for k in model.state_dict())
    # train.py's BiLSTM reads a lexicon and bigrams by default; the classifier trained apart reads the tagger's
    features, tagger_features = model.type_classifier.encoder.features, model.encoder.features
    assert features.word_ids.any() and torch.equal(features.word_ids, tagger_features.word_ids)
    assert torch.equal(features.bigram_keys, tagger_features.bigram_keys)
    tokenizer = BertTokenizerFast.from_pretrained(out)
    enc = tokenizer([list("我在北京工作")], is_split_into_words=True, return_tensors="pt")
    assert model.predict_entity_types(enc["input_ids"], enc["attention_mask"]).shape == (1, 10)
    assert model.predict_tags(["我在北京工作"], tokenizer)[0].__len__() == 6  # memories by predicted category


def test_num_memory_zero_is_the_plain_encoder_crf():
    """``num_memory=0``: no memory parameters, and the forward pass is encoder -> emissions -> CRF, nothing else."""
    torch.manual_seed(0)
    config = MemoryNetConfig(
        id2label={i: f"L{i}" for i in range(5)}, vocab_size=50, char_embedding_size=8, lstm_hidden_size=8,
        num_memory=0, use_self_attention=False,
    )  # fmt: skip
    model = MemoryNetForTokenClassification(config).eval()
    assert model.label_embeddings is model.memory_bank is model.type_classifier is None
    assert not any(k.startswith(("label_embeddings", "memory_bank", "type_classifier")) for k in model.state_dict())
    input_ids = torch.tensor([[2, 7, 8, 9, 3], [2, 7, 3, 0, 0]])
    mask = (input_ids != 0).long()
    labels = torch.tensor([[-100, 1, 2, 0, -100], [-100, 4, -100, -100, -100]])
    out = model(input_ids, attention_mask=mask, labels=labels)
    emissions = model.classifier(model.encoder(input_ids, attention_mask=mask))
    assert torch.equal(out.logits, emissions)
    assert torch.equal(out.loss, model.crf(emissions, mask, labels)) and torch.equal(
        out.tags, model.crf.decode(emissions, mask)
    )
    with pytest.raises(ValueError, match="num_memory=0"):
        model(input_ids, attention_mask=mask, memory_ids=torch.zeros(2, 4, dtype=torch.long))


def test_memory_gradient_option():
    """Stopping the gradient through the memories' encodings changes the encoder's gradient, not the loss."""
    torch.manual_seed(0)
    config = MemoryNetConfig(
        id2label={i: f"L{i}" for i in range(5)},
        vocab_size=50,
        char_embedding_size=8,
        lstm_hidden_size=8,
        num_memory=2,
        hidden_dropout_prob=0.0,
    )
    model = MemoryNetForTokenClassification(config).train()
    input_ids = torch.tensor([[2, 7, 8, 9, 3]])
    labels = torch.tensor([[-100, 1, 2, 0, -100]])
    memory = {
        "memory_input_ids": torch.tensor([[[2, 10, 11, 3], [2, 12, 3, 0]]]),
        "memory_attention_mask": torch.tensor([[[1, 1, 1, 1], [1, 1, 1, 0]]]),
        "memory_tag_ids": torch.tensor([[[-100, 1, 2, -100], [-100, 4, -100, -100]]]),
    }
    losses, grads = [], []
    for flag in (True, False):
        model.config.memory_gradient = flag
        model.zero_grad()
        loss = model(input_ids, labels=labels, **memory).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(model.encoder.embeddings.weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1])
    assert (
        grads[0][10:13].abs().sum() > 0 and grads[1][10:13].abs().sum() == 0
    )  # memory-only characters learn only with the gradient on
    assert grads[1][7:10].abs().sum() > 0


SWAP_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "S-PER", 4: "B-LOC", 5: "I-LOC", 6: "S-LOC"}


def test_swap_shared_entities_rewrites_an_entity_in_the_input_and_the_memories_that_hold_it():
    """An entity the input shares with a memory (same ids, same type) gets the same new characters in both; an
    occurrence of another type, an entity no memory holds and the labels stay as they were."""
    # [CLS] 10 11 12 13 14 15 [SEP]: PER 10 11, LOC 13, PER 14 15 (in no memory)
    input_ids = torch.tensor([[101, 10, 11, 12, 13, 14, 15, 102]])
    labels = torch.tensor([[-100, 1, 2, 0, 6, 1, 2, -100]])
    memory_ids = torch.tensor([[[101, 20, 10, 11, 102, 0], [101, 13, 10, 11, 102, 0], [101, 10, 11, 10, 11, 102]]])
    # memory 0: PER 10 11; memory 1: LOC 13, and 10 11 as LOC (another type); memory 2: PER 10 11 twice
    memory_tags = torch.tensor([[[-100, 0, 1, 2, -100, -100], [-100, 6, 4, 5, -100, -100], [-100, 1, 2, 1, 2, -100]]])
    args = (labels, memory_ids, memory_tags, SWAP_LABELS, "BIOS")
    assert swap_shared_entities(input_ids, *args, 0.0) == (input_ids, memory_ids)
    torch.manual_seed(0)
    new_input, new_memory = swap_shared_entities(input_ids, *args, 1.0)
    per, loc = new_input[0, 1:3], new_input[0, 4]
    assert not torch.equal(torch.stack([per[0], per[1], loc]), torch.tensor([10, 11, 13]))
    assert torch.equal(new_memory[0, 0, 2:4], per) and new_memory[0, 0, 1] == 20
    assert torch.equal(new_memory[0, 1, 2:4], torch.tensor([10, 11])) and new_memory[0, 1, 1] == loc
    assert torch.equal(new_memory[0, 2, 1:3], per) and torch.equal(new_memory[0, 2, 3:5], per)
    assert new_input[0, 3] == 12 and torch.equal(new_input[0, 5:7], torch.tensor([14, 15]))
    assert torch.equal(input_ids[0, 1:3], torch.tensor([10, 11]))  # the caller's tensors are not written to
    pool = {10, 11, 13, 14, 15}  # the new characters are the batch's gold entity characters
    assert set(new_input[0, 1:3].tolist()) | {int(loc)} <= pool


def test_entity_swap_acts_in_training_only():
    """``memory_entity_swap_prob`` changes the training loss (the swapped input is another input) and nothing in
    eval mode."""
    config = MemoryNetConfig(
        id2label=SWAP_LABELS, vocab_size=120, char_embedding_size=8, lstm_hidden_size=8, num_memory=1,
        hidden_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = MemoryNetForTokenClassification(config)
    batch = {
        "input_ids": torch.tensor([[101, 10, 11, 12, 102]]),
        "labels": torch.tensor([[-100, 1, 2, 0, -100]]),
        "memory_input_ids": torch.tensor([[[101, 30, 10, 11, 102]]]),
        "memory_attention_mask": torch.ones(1, 1, 5, dtype=torch.long),
        "memory_tag_ids": torch.tensor([[[-100, 0, 1, 2, -100]]]),
    }
    results = {}
    for prob in (0.0, 1.0):
        model.config.memory_entity_swap_prob = prob
        torch.manual_seed(1)
        train_loss = model.train()(**batch).loss.item()
        results[prob] = train_loss, model.eval()(**batch).loss.item()
    assert results[0.0][0] != pytest.approx(results[1.0][0])
    assert results[0.0][1] == pytest.approx(results[1.0][1])
    with pytest.raises(ValueError, match="memory_entity_swap_prob"):
        MemoryNetConfig(id2label=SWAP_LABELS, num_memory=1, memory_entity_swap_prob=1.5)


def test_memory_with_a_tiny_bert_encoder_saved_and_loaded_offline(tiny_bert_dir, tmp_path):
    """The transformers-encoder path with memory: trains, saves the bank, a fresh process tags identically."""
    out = tmp_path / "bert-memory"
    results = run_train(
        [
            "--output_dir", str(out), "--encoder", str(tiny_bert_dir), "--num_memory", "2",
            "--memory_method", "pos_edit", "--num_train_epochs", "3", "--save_strategy", "no",
            "--load_best_model_at_end", "false",
        ]
    )  # fmt: skip
    assert results["memory"]["num_memory"] == 2
    assert "pretrained encoder: --learning_rate 0.0002" in results["_stdout"] + results["_stderr"]
    config = json.loads((out / "config.json").read_text())
    assert config["encoder_type"] == "transformers" and config["memory_bank_size"] == 204
    model = MemoryNetForTokenClassification.from_pretrained(out)
    tokenizer = BertTokenizerFast.from_pretrained(out)
    expected = model.predict_tags(TEXTS[:2], tokenizer)
    lines = run_fresh_process(FRESH, str(out), json.dumps(TEXTS[:2]), cwd=tmp_path)
    assert json.loads(lines[-1])["tags"] == expected


def test_tagger_type_classifier_reads_types_off_its_viterbi_tags(tmp_path):
    """``type_classifier_kind="tagger"``: trained by its CRF on the NER tags; a type is predicted exactly when a
    decoded tag carries it."""
    from modeling.modeling_memory_ner import MemoryNetForEntityTypes

    torch.manual_seed(0)
    labels = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O", "S-LOC", "S-PER"]
    config = MemoryNetConfig(
        id2label=dict(enumerate(labels)),
        vocab_size=50,
        char_embedding_size=8,
        lstm_hidden_size=8,
        num_memory=2,
        memory_method="category",
        type_classifier_kind="tagger",
    )
    model = MemoryNetForEntityTypes(config)
    input_ids = torch.tensor([[2, 7, 8, 9, 3], [2, 7, 3, 0, 0]])
    mask = (input_ids != 0).long()
    tags = torch.tensor([[-100, 1, 3, 4, -100], [-100, 5, -100, -100, -100]])
    out = model(input_ids, mask, entity_types=torch.tensor([[0, 1], [1, 0]]), labels=tags)
    assert out.logits is None and out.loss.item() > 0  # training: the CRF loss, no decoding
    with pytest.raises(ValueError, match="pass labels"):
        model(input_ids, mask, entity_types=torch.tensor([[0, 1], [1, 0]]))
    model.eval()
    clf = model.type_classifier
    decoded = clf.crf.decode(clf.emissions(input_ids, mask), mask)
    expected = [
        [int(any(t >= 0 and labels[t].endswith(name) for t in row.tolist())) for name in config.entity_types]
        for row in decoded
    ]
    logits = model(input_ids, mask).logits
    assert ((logits > 0).long().tolist()) == expected and set(logits.abs().flatten().tolist()) == {clf.TAGGER_LOGIT}
    model.save_pretrained(tmp_path)  # the tag -> type table is rebuilt on load, not left uninitialised
    loaded = MemoryNetForEntityTypes.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.type_classifier.tag_types, clf.tag_types) and torch.equal(
        loaded(input_ids, mask).logits, logits
    )
    with (
        torch.no_grad()
    ):  # force the path: every character S-PER (both sentences have PER), then every character O (no types)
        clf.classifier.weight.zero_()
        clf.classifier.bias.copy_(torch.tensor([0, 0, 0, 0, 0, 0, 50.0]))
        clf.crf.crf.transitions.zero_(), clf.crf.crf.start_transitions.zero_(), clf.crf.crf.end_transitions.zero_()
        assert model(input_ids, mask).logits.gt(0).long().tolist() == [[0, 1], [0, 1]]
        clf.classifier.bias.copy_(torch.tensor([0, 0, 0, 0, 50.0, 0, 0]))
        assert model(input_ids, mask).logits.gt(0).long().tolist() == [[0, 0], [0, 0]]


TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 60,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
}


@pytest.mark.parametrize("tagger, classifier", [("bilstm", "transformers"), ("transformers", "bilstm")])
def test_type_classifier_encoder_apart_from_the_tagger(tagger, classifier, tmp_path):
    """``type_classifier_encoder_type``: the entity-type classifier gets its own kind of encoder (a BERT classifier
    beside a
    BiLSTM tagger, as the paper's, or the other way round), and keeps it through save and load."""
    from modeling.encoders import CharBiLSTMEncoder, TransformersEncoder

    kinds = {"bilstm": CharBiLSTMEncoder, "transformers": TransformersEncoder}
    torch.manual_seed(0)
    labels = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O", "S-LOC", "S-PER"]
    config = MemoryNetConfig(
        id2label=dict(enumerate(labels)),
        vocab_size=60,
        char_embedding_size=8,
        lstm_hidden_size=8,
        num_memory=2,
        memory_method="category",
        encoder_type=tagger,
        encoder_config=TINY_BERT if tagger == "transformers" else None,
        type_classifier_encoder_type=classifier,
        type_classifier_encoder_config=TINY_BERT if classifier == "transformers" else None,
    )
    model = MemoryNetForTokenClassification(config).eval()
    assert isinstance(model.encoder, kinds[tagger]) and isinstance(model.type_classifier.encoder, kinds[classifier])
    input_ids = torch.tensor([[2, 7, 8, 9, 3], [2, 7, 3, 0, 0]])
    mask = (input_ids != 0).long()
    logits = model.type_classifier(input_ids, mask)
    model.save_pretrained(tmp_path)
    loaded, info = MemoryNetForTokenClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert loaded.config.type_classifier_encoder == (classifier, loaded.config.type_classifier_encoder[1])
    assert isinstance(loaded.type_classifier.encoder, kinds[classifier])
    assert torch.equal(loaded.eval().type_classifier(input_ids, mask), logits)
    with pytest.raises(
        ValueError, match="type_classifier_encoder_config"
    ):  # a BERT classifier needs a BERT config from somewhere
        MemoryNetConfig(
            id2label=dict(enumerate(labels)),
            num_memory=2,
            memory_method="category",
            type_classifier_encoder_type="transformers",
        )


def test_train_py_bilstm_tagger_with_a_pretrained_type_classifier(tiny_bert_dir, tmp_path):
    """``--type_classifier_encoder DIR``: a BiLSTM tagger retrieves memories with a classifier on a pretrained encoder
    (here a
    tiny random BERT), trained at the paper's 3e-5; a fresh offline process loads both and tags identically."""
    out = tmp_path / "bilstm-bert-classifier"
    results = run_train(
        [
            "--output_dir", str(out), "--num_memory", "2", "--memory_method", "category",
            "--type_classifier_encoder", str(tiny_bert_dir), "--num_train_epochs", "2",
            "--type_classifier_epochs", "2", "--type_classifier_folds", "1", "--lstm_hidden_size", "32",
            "--save_strategy", "no", "--load_best_model_at_end", "false",
        ]
    )  # fmt: skip
    log = results["_stdout"] + results["_stderr"]
    assert f"entity-type classifier: pooled ({tiny_bert_dir}), lr encoder 3e-05 / other layers 0.002" in log
    assert f"tokenizer: tokenizer of {tiny_bert_dir}" in log
    assert results["type_classifier_validation"]["micro"]["support"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["encoder_type"] == "bilstm" and config["type_classifier_encoder_type"] == "transformers"
    assert config["type_classifier_encoder_config"]["hidden_size"] == 64
    model = MemoryNetForTokenClassification.from_pretrained(out)
    pretrained = load_file(tiny_bert_dir / "model.safetensors")["embeddings.word_embeddings.weight"]
    trained = model.type_classifier.encoder.model.embeddings.word_embeddings.weight
    assert torch.equal(trained[-1], pretrained[-1]) and not torch.equal(
        trained, pretrained
    )  # started from the checkpoint, then trained
    assert (
        trained - pretrained
    ).abs().max() < 2e-3  # 26 Adam steps at 3e-5 (at the tagger's 2e-3 they move weights by ~2e-2)
    tokenizer = BertTokenizerFast.from_pretrained(out)
    expected = model.predict_tags(TEXTS[:2], tokenizer)  # memories retrieved by the BERT classifier's types
    lines = run_fresh_process(FRESH, str(out), json.dumps(TEXTS[:2]), cwd=tmp_path)
    assert json.loads(lines[-1])["tags"] == expected


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no_category", "vocabulary"])
def test_type_classifier_encoder_errors(case, data_dir, tmp_path):
    """A classifier encoder without category retrieval, or one whose vocabulary is smaller than the tokenizer's,
    stops with a clear message."""
    from transformers import BertConfig

    from data_scripts.features import BERT_VOCAB

    BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    ).save_pretrained(tmp_path / "small-bert")
    args = [
        "--type_classifier_encoder", str(tmp_path / "small-bert"),
        "--tokenizer_name", str(data_dir / BERT_VOCAB), "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    args += ["--memory_method", "pos_edit" if case == "no_category" else "category"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if case == "no_category":
        assert proc.returncode == 2 and "--type_classifier_encoder is the encoder of category retrieval" in proc.stderr
    else:
        last = proc.stderr.splitlines()[-1]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert last.startswith("train.py: error: ") and "its 100 token embeddings do not cover the tokenizer's" in last


def test_the_memory_stage_reads_the_model_and_apply_memory_plan_alone_changes_it(tmp_path):
    """prepare_memories (entity retrieval, no training run) returns a plan and leaves the model as it was;
    apply_memory_plan installs the plan's bank, and every split's memory ids index that bank."""
    from types import SimpleNamespace

    from data_scripts.corpora import load_corpus
    from data_scripts.features import load_tokenizer
    from data_scripts.memory_data import prepare_memories
    from train import tokenize_corpus

    corpus = load_corpus("sample").truncated(40, 12)
    tokenizer, _ = load_tokenizer(None, corpus["train"]["tokens"], tmp_path, model_max_length=64)
    config = MemoryNetConfig(
        id2label=dict(enumerate(corpus.label_names)),
        vocab_size=len(tokenizer),
        char_embedding_size=8,
        lstm_hidden_size=8,
        num_memory=2,
        memory_method="entity",
    )
    model = MemoryNetForTokenClassification(config)
    features = tokenize_corpus(corpus, tokenizer, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training_args = SimpleNamespace(
        output_dir=str(tmp_path), seed=0, main_process_first=lambda desc: contextlib.nullcontext()
    )
    plan = prepare_memories(model, corpus, features, tokenizer, SimpleNamespace(), training_args)
    assert model.memory_bank is None and model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert len(plan.bank) == 40 and plan.type_classifier_state is None
    assert plan.report["memory"]["method"] == "entity" and "train_retrieval_seconds" in plan.report["memory"]
    model.apply_memory_plan(plan)
    assert model.memory_bank is plan.bank and model.config.memory_bank_size == 40
    with_ids = plan.with_memory_ids(features)
    for split, ds in with_ids.items():
        ids = torch.tensor(ds["memory_ids"])
        assert ids.shape == (len(features[split]), 2) and 0 <= int(ids.min()) and int(ids.max()) < 40
    assert all(k not in row for k, row in enumerate(with_ids["train"]["memory_ids"]))  # never itself


def test_bank_encoding_cache_pads_each_sentence_with_zeros_whatever_its_table_held(monkeypatch):
    """The table is allocated empty; a sentence encoded in a narrow chunk must still read as zeros past
    that chunk's width when a later look-up is wider."""
    import numpy as np

    from modeling.memory_bank import BankEncodingCache, MemoryBank

    ids = [[2, 5, 3], [2, 5, 6, 7, 8, 3]]  # [CLS] chars [SEP]: lengths 3 and 6
    bank = MemoryBank.from_sentences(ids, [[-100] * len(x) for x in ids], np.zeros((2, 1)), ["", ""])
    monkeypatch.setattr(torch.Tensor, "new_empty", lambda self, *size: self.new_full(size, float("nan")))
    cache = BankEncodingCache(16)
    encode = lambda input_ids, attention_mask: attention_mask[..., None].float().expand(-1, -1, 4)  # noqa: E731
    cache.lookup(bank, torch.tensor([0]), encode)  # sentence 0 alone: a chunk 3 wide
    both = cache.lookup(bank, torch.tensor([[0, 1]]), encode)  # 6 wide
    assert both.shape == (1, 2, 6, 4)
    assert torch.equal(both[0, 0, :, 0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    assert torch.equal(both[0, 1, :, 0], torch.ones(6))


def test_predict_tags_encodes_the_bank_once(memory_run):
    """eval() changes no weight, so a second call reads every memory from the cache; train() drops it."""
    folder, _ = memory_run
    model = MemoryNetForTokenClassification.from_pretrained(folder)
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    texts = [json.loads(line)["text"] for line in (SAMPLE_DIR / "dev.json").read_text(encoding="utf-8").splitlines()]
    first = model.predict_tags(texts[:16], tokenizer)
    encoded = model.memory_cache.encoded
    assert encoded > 0
    assert model.predict_tags(texts[:16], tokenizer) == first and model.memory_cache.encoded == encoded
    model.train()
    assert len(model.memory_cache) == 0


def test_the_bank_encoding_cache_stays_within_its_bound(memory_run):
    """A bank many times the bound tagged through: the cache never holds more than ``memory_cache_size``
    sentences, drops the least recently used, and tags as an unbounded one does."""
    folder, _ = memory_run
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    texts = [json.loads(line)["text"] for line in (SAMPLE_DIR / "train.json").read_text(encoding="utf-8").splitlines()]
    bounded = MemoryNetForTokenClassification.from_pretrained(folder, memory_cache_size=8)
    unbounded = MemoryNetForTokenClassification.from_pretrained(folder, memory_cache_size=100_000)
    assert len(bounded.memory_bank) >= 2 * 8
    tags = []
    for start in range(0, len(texts), 4):
        tags += bounded.predict_tags(texts[start : start + 4], tokenizer, batch_size=2)
        assert len(bounded.memory_cache) <= 8 and len(bounded.memory_cache.table) <= 8
    assert bounded.memory_cache.encoded > 2 * 8  # it did turn over
    assert tags == unbounded.predict_tags(texts, tokenizer)
    # one call wanting more memories than the bound: encoded for that call only
    assert bounded.predict_tags(texts[:40], tokenizer) == tags[:40] and len(bounded.memory_cache) <= 8
