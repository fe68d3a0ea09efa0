"""push_to_hub.py: the Hub repo folder it builds loads anywhere, and its card reports the measured scores."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT


def push(args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_TOKEN": ""}
    return subprocess.run(
        [sys.executable, str(ROOT / "push_to_hub.py"), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n", 2)[1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "which,module", [("memory_run", "modeling_memory_ner.py"), ("seq2seq_run", "modeling_seq2seq_ner.py")]
)
def test_dry_run_builds_a_folder_that_loads_offline_and_a_card_with_the_measured_metrics(
    which, module, request, tmp_path
):
    folder, results = request.getfixturevalue(which)
    out = tmp_path / "repo"
    proc = push([folder, "--output_dir", out, "--dry-run", "--repo_id", "someone/chinese-ner-test"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "a fresh offline process loaded it" in proc.stdout

    files = {p.name for p in out.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "all_results.json",
        "pipeline_ner.py",
        module,
    } <= files
    assert (
        not {"retrieval_cache", "training_args.bin", "trainer_state.json"} & files
    )  # the repo holds what loading needs
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForTokenClassification"].startswith(module[:-3] + ".")
    assert "chinese-ner" in config["custom_pipelines"]

    meta = front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert meta["language"] == ["zh"] and meta["license"] and "token-classification" in meta["tags"]
    assert meta["model-index"][0]["name"] == "someone/chinese-ner-test"
    entries = meta["model-index"][0]["results"]
    assert [e["dataset"]["split"] for e in entries] == ["validation"]  # the sample corpus has no test split
    card_metrics = {m["type"]: m["value"] for m in entries[0]["metrics"]}
    assert card_metrics == {k: round(100 * results[f"validation_{k}"], 2) for k in ("f1", "precision", "recall")}
    body = (out / "README.md").read_text(encoding="utf-8")
    assert 'pipeline("chinese-ner", model="someone/chinese-ner-test", trust_remote_code=True)' in body
    assert f"{100 * results['validation_f1']:.2f}" in body and "## Limitations" in body and "王卫红" in body


def test_upload_offline_fails_with_one_clear_sentence(memory_run, tmp_path):
    folder, _ = memory_run
    proc = push(
        [folder, "--output_dir", tmp_path / "repo", "--repo_id", "someone/chinese-ner-test", "--token", "hf_fake"]
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    message = [line for line in proc.stderr.splitlines() if line.startswith("push_to_hub.py:")]
    assert len(message) == 1 and "could not upload to the Hub repo 'someone/chinese-ner-test'" in message[0], (
        proc.stderr[-2000:]
    )
    assert (tmp_path / "repo" / "model.safetensors").exists()  # built and checked before the upload was tried


@pytest.mark.slow
def test_a_folder_that_is_not_a_trained_model_gets_a_clear_error(tmp_path):
    proc = push([tmp_path, "--dry-run"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is not a model folder written by train.py" in proc.stderr
    proc = push([tmp_path])
    assert proc.returncode == 2 and "give --repo_id to upload, or --dry-run" in proc.stderr


@pytest.mark.parametrize(
    "corpus,hub_ids,index_type",
    [
        ("msra", ["levow/msra_ner"], "levow/msra_ner"),
        ("cluener", None, "cluener2020"),
        ("peoples_daily", None, "peoples_daily_1998"),
        ("sample", None, "sample"),
    ],
)
def test_card_lists_only_hub_datasets_that_are_the_same_corpus(corpus, hub_ids, index_type):
    sys.path.insert(0, str(ROOT))
    from push_to_hub import model_card

    config = {"model_type": "memory_ner", "num_memory": 4, "tag_scheme": "BIOS", "id2label": {"0": "O", "1": "B-PER"}}
    results = {"dataset": corpus, "validation_f1": 0.5, "validation_precision": 0.5, "validation_recall": 0.5}
    meta = front_matter(model_card("someone/x", config, results, "apache-2.0"))
    assert meta.get("datasets") == hub_ids  # a made-up id would be a dead link on the model page
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == index_type


@pytest.mark.parametrize("encoder", ["bilstm", "hfl/chinese-roberta-wwm-ext"])
def test_card_says_which_input_features_the_bilstm_reads(encoder):
    sys.path.insert(0, str(ROOT))
    from push_to_hub import model_card

    config = {
        "model_type": "memory_ner", "num_memory": 4, "tag_scheme": "BIOS", "id2label": {"0": "O", "1": "B-PER"},
        "lstm_hidden_size": 256, "bigram_vocab_size": 609, "use_softword": True, "use_word_sets": True,
        "lexicon_size": 339519, "encoder": encoder,
    }  # fmt: skip
    args = {"encoder": encoder, "use_bigrams": True, "use_softword": True, "use_word_sets": True, "lexicon": "jieba"}
    results = {"dataset": "sample", "validation_f1": 0.5, "validation_precision": 0.5, "validation_recall": 0.5}
    card = model_card("someone/x", config, {**results, "arguments": args}, "apache-2.0")
    encoder_line = next(line for line in card.splitlines() if "Encoder:" in line)
    if encoder == "bilstm":
        for words in ("char bigrams (609 in its vocabulary)", "softword", "word sets", "339519 words of jieba's"):
            assert words in encoder_line
        assert "`--use_word_sets True`" in card
        plain = model_card("someone/x", {**config, "bigram_vocab_size": 0, "use_softword": False,
                                         "use_word_sets": False}, results, "apache-2.0")  # fmt: skip
        assert "reads" not in next(line for line in plain.splitlines() if "Encoder:" in line)
    else:  # a pretrained encoder reads none of them, whatever the flags said
        assert "bigrams" not in encoder_line and "--use_word_sets" not in card
