"""train.py's own code: arguments and presets, the prediction file, and how one run wires the memory
bank, char vectors and the retrieval cache together (small runs with ``--max_steps``)."""

import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertTokenizerFast

from conftest import ROOT, run_train
from data_scripts.sample import SAMPLE_DIR
from modeling import MemoryNetConfig, MemoryNetForTokenClassification, Seq2SeqAttnConfig
import train  # conftest puts the repo root on sys.path


def parse(monkeypatch, *argv: str):
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    return train.parse_args()


# ---------------------------------------------------------------------------------------------
# arguments: files, presets, errors (no training)


@pytest.mark.parametrize("source", ["json", "yaml", "command line"])
def test_arguments_from_a_file_or_the_command_line(source, tmp_path, monkeypatch):
    given = {"dataset": "sample", "num_train_epochs": 1, "output_dir": str(tmp_path / "out"), "lstm_hidden_size": 32}
    if source == "json":
        (tmp_path / "args.json").write_text(json.dumps(given))
        argv = [str(tmp_path / "args.json")]
    elif source == "yaml":
        (tmp_path / "args.yaml").write_text("".join(f"{k}: {v}\n" for k, v in given.items()))
        argv = [str(tmp_path / "args.yaml")]
    else:
        argv = [x for k, v in given.items() for x in (f"--{k}", str(v))]
    model_args, data_args, training_args = parse(monkeypatch, *argv)
    assert (model_args.lstm_hidden_size, data_args.dataset, training_args.output_dir) == (
        32,
        "sample",
        str(tmp_path / "out"),
    )
    assert training_args.num_train_epochs == 1  # given: it beats the sample corpus preset's 30
    assert training_args.learning_rate == 2e-3  # not given: the BiLSTM preset


def test_presets_apply_only_to_what_the_user_left_out(monkeypatch):
    model_args, data_args, training_args = parse(monkeypatch, "--model_type", "seq2seq")
    assert (data_args.tag_scheme, model_args.lstm_hidden_size) == ("BIEO", 128)  # the seq2seq paper's
    assert training_args.output_dir == "outputs/sample-seq2seq"  # not TrainingArguments' "trainer_output"
    model_args, data_args, training_args = parse(
        monkeypatch, "--model_type", "seq2seq", "--tag_scheme", "BIOES", "--learning_rate", "1e-4"
    )
    assert (data_args.tag_scheme, training_args.learning_rate) == ("BIOES", 1e-4)
    _, _, training_args = parse(monkeypatch, "--encoder", "some/pretrained-bert", "--dataset", "cluener")
    assert training_args.learning_rate == 2e-4  # the paper's rate for the layers above a pretrained encoder


FEATURE_FLAGS = ("use_bigrams", "use_softword", "use_word_sets")


def test_a_new_bilstm_reads_the_input_features_and_a_saved_model_keeps_its_own(monkeypatch, tmp_path, capsys):
    model_args, _, training_args = parse(monkeypatch, "--model_type", "seq2seq")
    assert [getattr(model_args, f) for f in FEATURE_FLAGS] == [True, True, True]
    assert (model_args.hidden_dropout_prob, training_args.learning_rate) == (0.5, 2e-3)
    model_args, _, training_args = parse(monkeypatch, "--use_word_sets", "false", "--hidden_dropout_prob", "0.2")
    assert [getattr(model_args, f) for f in FEATURE_FLAGS] == [True, True, False]
    assert model_args.hidden_dropout_prob == 0.2
    model_args, _, training_args = parse(monkeypatch, "--encoder", "some/pretrained-bert")
    assert [getattr(model_args, f) for f in FEATURE_FLAGS] == [False, False, False]
    assert model_args.hidden_dropout_prob == MemoryNetConfig.hidden_dropout_prob
    # fine-tuning: the features and the dropout are the saved model's, whatever the preset says
    MemoryNetConfig(use_softword=True, bigram_vocab_size=7, hidden_dropout_prob=0.3).save_pretrained(tmp_path)
    model_args, _, _ = parse(monkeypatch, "--model_name_or_path", str(tmp_path))
    assert [getattr(model_args, f) for f in FEATURE_FLAGS] == [True, True, False]
    assert model_args.hidden_dropout_prob == 0.3
    with pytest.raises(SystemExit):
        parse(monkeypatch, "--model_name_or_path", str(tmp_path), "--use_word_sets", "true")
    assert "--use_word_sets True differs from the saved model's False" in capsys.readouterr().err


def test_the_default_config_is_the_model_train_py_trains(monkeypatch):
    """``MemoryNetConfig()`` is the architecture ``python train.py`` builds (the corpus's labels, vocabulary,
    lexicon and char vectors aside) but for what the BiLSTM preset sets, and every other train.py default that is
    a config field agrees with it."""
    for config, argv in ((MemoryNetConfig(), []), (Seq2SeqAttnConfig(), ["--model_type", "seq2seq"])):
        built = train.architecture(*parse(monkeypatch, *argv)[:2])
        preset = {name: value for name, value in train.BILSTM_ENCODER_PRESET.items() if name in built}
        assert set(preset) == {"hidden_dropout_prob", "use_softword", "use_word_sets"}
        assert {name: getattr(config, name) for name in built} | preset == built


def test_an_abbreviated_flag_counts_as_given_and_beats_the_presets(monkeypatch):
    model_args, data_args, training_args = parse(
        monkeypatch, "--model_type", "seq2seq", "--tag_sch", "BIO", "--num_train_ep", "3"
    )
    assert (data_args.tag_scheme, training_args.num_train_epochs) == (
        "BIO",
        3,
    )  # not the seq2seq / sample presets' BIEO and 30
    assert (model_args.lstm_hidden_size, training_args.learning_rate) == (128, 2e-3)  # not given: the presets'


@pytest.mark.parametrize(
    "given, message",
    [
        ({"memory_method": "entities"}, "argument --memory_method: invalid choice: 'entities'"),
        ({"num_train_epoch": 3}, "unrecognized arguments: num_train_epoch"),  # a file's keys are not abbreviated
    ],
)
def test_a_file_with_a_bad_choice_or_name_gets_a_clear_error(given, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "args.json").write_text(json.dumps(given))
    with pytest.raises(SystemExit):
        parse(monkeypatch, str(tmp_path / "args.json"))
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model_type", "crf"], "invalid choice: 'crf' (choose from 'memory', 'seq2seq')"),
        (["--memory_method", "entity", "--oracle_type_share", "0.5"], "--oracle_type_share blends gold"),
        (["--memory_method", "category", "--oracle_type_share", "2"], "within [0, 1]"),
        (["--ignore_mismatched_sizes", "true"], "needs --model_name_or_path"),
        (["--feature_vectors", "chars"], "it needs --char_vectors"),
    ],
)
def test_bad_argument_combinations_get_a_clear_error(argv, message, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        parse(monkeypatch, *argv)
    assert message in capsys.readouterr().err


def test_write_predictions_rejoins_the_pieces_of_a_long_text(tmp_path):
    """CLUENER's layout: one line per source text, pieces (``id#k``) joined back, inclusive end offsets."""
    label_names = ["O", "B-name", "I-name", "S-name", "B-address", "I-address", "S-address"]  # BIOS
    raw = {"id": ["7#0", "7#1", "8"], "tokens": [list("张三在"), list("北京见张三"), list("李")]}
    tags = np.array(
        [  # aligned with input_ids: [CLS], the characters, [SEP], padding
            [0, 1, 2, 0, 0, -100, -100],
            [0, 4, 5, 0, 1, 2, 0],
            [0, 3, 0, -100, -100, -100, -100],
        ]
    )
    trainer = SimpleNamespace(
        predict=lambda features, metric_key_prefix: SimpleNamespace(predictions=tags),
        is_world_process_zero=lambda: True,
    )
    path = tmp_path / "test_predictions.json"
    train.write_predictions(trainer, None, raw, label_names, "BIOS", path)
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == [
        {
            "id": "7",
            "text": "张三在北京见张三",
            "label": {"name": {"张三": [[0, 1], [6, 7]]}, "address": {"北京": [[3, 4]]}},
        },
        {"id": "8", "text": "李", "label": {"name": {"李": [[0, 0]]}}},
    ]


@pytest.mark.slow
def test_the_readme_main_command_learns_the_sample(tmp_path):
    """The README's ``python train.py`` (no arguments), run here in an empty folder: the default model (memory
    network, entity retrieval) learns the sample (~0.8 F1; a diverging default scores ~0.2) and writes its folder
    where the README says."""
    results = run_train([], cwd=tmp_path)
    out = tmp_path / "outputs" / "sample-memory"
    assert (
        results["dataset"] == "sample"
        and results["memory"]["num_memory"] == 4
        and results["memory"]["method"] == "entity"
    )
    assert results["validation_f1"] >= 0.6, results["validation_f1"]
    assert (out / "model.safetensors").exists() and (out / "pipeline_ner.py").exists()
    assert f"{results['validation_f1']:.4f}" in results["_stdout"]  # the report it printed is the one it saved


# ---------------------------------------------------------------------------------------------
# one small memory-network run on a CLUENER-style folder, twice into the same output folder

DIM = 16


@pytest.fixture(scope="module")
def wiring_run(tmp_path_factory):
    """A CLUENER folder (40 sample sentences + 4 exact repeats of them, 16 dev, 10 unlabelled test),
    16-d char vectors for some characters, no ../shared/data, learning rate 0 (so what the vectors set
    is still there to check), entity retrieval; run twice with the same output folder."""
    root = tmp_path_factory.mktemp("wiring")
    folder = root / "corpus"
    folder.mkdir()
    train_lines = (SAMPLE_DIR / "train.json").read_text(encoding="utf-8").splitlines()[:40]
    train_lines += train_lines[:4]
    dev_lines = (SAMPLE_DIR / "dev.json").read_text(encoding="utf-8").splitlines()
    (folder / "train.json").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    (folder / "dev.json").write_text("\n".join(dev_lines[:16]) + "\n", encoding="utf-8")
    test = [{"id": 100 + k, "text": json.loads(line)["text"]} for k, line in enumerate(dev_lines[16:26])]
    (folder / "test.json").write_text(
        "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in test), encoding="utf-8"
    )

    chars = sorted({ch for line in train_lines for ch in json.loads(line)["text"]})[::2]  # half the characters
    vectors = np.random.default_rng(0).normal(size=(len(chars) + 1, DIM)).astype(np.float32)
    np.savez(root / "vectors.npz", embeddings=vectors)
    (root / "vectors.vocab.txt").write_text("\n".join([*chars, "不在语料"]) + "\n", encoding="utf-8")

    out = root / "out"
    args = [
        "--dataset", str(folder), "--output_dir", str(out), "--num_memory", "2", "--memory_method", "entity",
        "--char_vectors", str(root / "vectors.npz"), "--char_embedding_size", str(DIM),
        "--lstm_hidden_size", "16", "--max_steps", "2", "--learning_rate", "0", "--save_strategy", "no",
        "--load_best_model_at_end", "false",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NER_DATA_DIR", str(root / "nowhere"))  # the vocabulary comes from the corpus
        first = run_train(args)
        predictions = (out / "test_predictions.json").read_text(encoding="utf-8")
        second = run_train(args)
    return SimpleNamespace(
        folder=folder,
        out=out,
        train_lines=train_lines,
        chars=chars,
        vectors=vectors,
        first=first,
        second=second,
        first_predictions=predictions,
    )


def test_an_unlabelled_test_split_gets_cluener_format_predictions(wiring_run):
    assert "test_f1" not in wiring_run.first  # no labels, no scores
    lines = [
        json.loads(line)
        for line in (wiring_run.out / "test_predictions.json").read_text(encoding="utf-8").splitlines()
    ]
    source = [json.loads(line) for line in (wiring_run.folder / "test.json").read_text(encoding="utf-8").splitlines()]
    assert [(p["id"], p["text"]) for p in lines] == [(str(s["id"]), s["text"]) for s in source]
    for p in lines:
        for surfaces in p["label"].values():
            for surface, spans in surfaces.items():
                assert all(p["text"][a : b + 1] == surface for a, b in spans)


def test_the_saved_config_carries_the_label_names(wiring_run):
    config = json.loads((wiring_run.out / "config.json").read_text())
    assert config["id2label"]["0"] == "O" and config["label2id"]["S-name"] > 0 and config["label2id"]["B-company"] > 0


def test_char_vectors_set_the_character_rows_and_the_label_embeddings(wiring_run):
    model = MemoryNetForTokenClassification.from_pretrained(wiring_run.out)
    tokenizer = BertTokenizerFast.from_pretrained(wiring_run.out)
    vocab = tokenizer.get_vocab()
    vocab_lines = (wiring_run.out / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert vocab_lines[:5] == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]  # built from the corpus: no shared vocab here
    assert {ch for line in wiring_run.train_lines for ch in json.loads(line)["text"]} <= set(vocab)
    weight = model.get_input_embeddings().weight.detach().numpy()
    for ch, vector in zip(wiring_run.chars, wiring_run.vectors):
        np.testing.assert_allclose(weight[vocab[ch]], vector, rtol=1e-6, err_msg=ch)
    # each type's label embedding: the mean over its training entities of their characters' mean vector
    row = {ch: k for k, ch in enumerate(wiring_run.chars)}
    per_type: dict[str, list] = {}
    for line in wiring_run.train_lines:
        example = json.loads(line)
        for etype, surfaces in example["label"].items():
            for spans in surfaces.values():
                for a, b in spans:
                    rows = [row[ch] for ch in example["text"][a : b + 1] if ch in row]
                    if rows:
                        per_type.setdefault(etype, []).append(wiring_run.vectors[rows].mean(axis=0))
    labels = model.label_embeddings.weight.detach().numpy()
    assert len(per_type) >= 5
    for etype, means in per_type.items():
        np.testing.assert_allclose(
            labels[model.config.label2id[f"B-{etype}"], :DIM], np.mean(means, axis=0), rtol=1e-5, atol=1e-6
        )


def train_memory_ids(run) -> np.ndarray:
    """The training split's memory ids, as the run's retrieval cache holds them (rows: training sentences)."""
    arrays = [np.load(p, allow_pickle=True) for p in sorted((run.out / "retrieval_cache").glob("*.npy"))]
    ids = [a for a in arrays if a.dtype != object and a.shape == (len(run.train_lines), 2)]
    assert len(ids) == 1, [a.shape for a in arrays]
    return ids[0]


def test_training_memories_are_never_an_identical_text(wiring_run):
    """train.py's wiring, not only ``rank_memories``: the four repeated sentences are each other's best
    entity match, yet none retrieves its twin (or itself)."""
    model = MemoryNetForTokenClassification.from_pretrained(wiring_run.out)
    bank = model.memory_bank.sentence_texts()
    texts = [json.loads(line)["text"] for line in wiring_run.train_lines]
    assert bank == texts
    ids = train_memory_ids(wiring_run)
    for i, row in enumerate(ids):
        assert all(texts[j] != texts[i] for j in row), (i, texts[i], [texts[j] for j in row])


def test_a_second_run_reads_its_memories_from_the_retrieval_cache(wiring_run):
    first, second = wiring_run.first["memory"], wiring_run.second["memory"]
    splits = ("train", "validation", "test")
    assert [first[f"{s}_retrieval_cached"] for s in splits] == [False] * 3
    assert [second[f"{s}_retrieval_cached"] for s in splits] == [True] * 3
    assert second["train_retrieval_seconds"] == 0.0
    assert (wiring_run.out / "test_predictions.json").read_text(encoding="utf-8") == wiring_run.first_predictions
    assert wiring_run.second["validation_f1"] == wiring_run.first["validation_f1"]


# ---------------------------------------------------------------------------------------------
# resuming a memory network


@pytest.mark.slow
def test_resume_from_checkpoint_continues_a_memory_model_with_its_bank_and_type_classifier(tmp_path):
    """Category retrieval, so the model holds a memory bank and an entity-type classifier. A run resumed
    from the full run's epoch-1 checkpoint ends with exactly the full run's weights, buffers and scores.
    Training on CPU is deterministic, so a run that ignored the checkpoint would match too: a run resumed
    from a checkpoint whose tagger and classifier weights were changed must end with the changed
    classifier (frozen, so restored as it was), other tagger weights, and the same bank."""
    common = [
        "--num_memory", "2", "--memory_method", "category", "--type_classifier_epochs", "1",
        "--max_train_samples", "48", "--max_eval_samples", "16", "--num_train_epochs", "2",
        "--lstm_hidden_size", "16", "--learning_rate", "5e-3", "--save_strategy", "epoch",
        "--load_best_model_at_end", "false", "--seed", "5",
    ]  # fmt: skip
    full = run_train([*common, "--output_dir", str(tmp_path / "full")])
    ckpt = tmp_path / "resumed" / "checkpoint-3"  # 48 sentences, batch 16: 3 steps an epoch
    shutil.copytree(tmp_path / "full" / ckpt.name, ckpt)
    resumed = run_train([*common, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", str(ckpt)])
    assert json.loads((tmp_path / "resumed" / "trainer_state.json").read_text())["global_step"] == 6

    perturbed = tmp_path / "perturbed" / ckpt.name
    shutil.copytree(ckpt, perturbed)
    weights = load_file(perturbed / "model.safetensors")
    generator = torch.Generator().manual_seed(0)
    # the weights, not the lexicon's word frequencies (floating buffers, but data: they must stay positive)
    learned = {k for k, v in weights.items() if v.is_floating_point() and not k.endswith(".word_freqs")}
    tagger = {k for k in learned if not k.startswith(("memory_bank.", "type_classifier."))}
    classifier = {k for k in learned if k.startswith("type_classifier.")}
    changed = {
        k: v + 0.5 * torch.randn(v.shape, generator=generator) if k in tagger | classifier else v
        for k, v in weights.items()
    }
    save_file(changed, perturbed / "model.safetensors", metadata={"format": "pt"})
    run_train([*common, "--output_dir", str(tmp_path / "perturbed"), "--resume_from_checkpoint", str(perturbed)])

    final = {name: load_file(tmp_path / name / "model.safetensors") for name in ("full", "resumed", "perturbed")}
    bank = {k for k in final["full"] if k.startswith("memory_bank.")}
    assert bank and classifier
    assert final["full"].keys() == final["resumed"].keys() == final["perturbed"].keys()
    assert all(torch.equal(final["resumed"][k], v) for k, v in final["full"].items()), (
        "resuming changed the final weights"
    )
    assert resumed["validation_f1"] == full["validation_f1"]
    assert resumed["type_classifier_validation"] == full["type_classifier_validation"]
    assert all(torch.equal(final["perturbed"][k], final["full"][k]) for k in bank)
    assert all(torch.equal(final["perturbed"][k], changed[k]) for k in classifier), (
        "the checkpoint's classifier was not restored"
    )
    assert not all(torch.allclose(final["perturbed"][k], final["full"][k]) for k in tagger), (
        "the checkpoint's weights were not used"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["malformed training file", "missing training file", "missing model folder", "unknown dataset"]
)
def test_errors_the_user_can_fix_are_one_line_and_status_2(case, tmp_path):
    """As argparse reports a bad flag: ``train.py: error: <message>`` alone on stderr, exit status 2, no traceback."""
    bad = tmp_path / "train.txt"
    bad.write_text("张 B-PER\n三 I-PER\n在 O O\n", encoding="utf-8")
    argv = {
        "malformed training file": ["--train_file", str(bad)],
        "missing training file": ["--train_file", str(tmp_path / "nowhere.txt")],
        "missing model folder": ["--model_name_or_path", str(tmp_path / "no-model")],
        "unknown dataset": ["--dataset", "no-such-corpus"],
    }[case]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *argv, "--output_dir", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("train.py: error: "), proc.stderr[-3000:]
    if case == "malformed training file":
        assert f"{bad}:3:" in lines[0]
