"""Public corpora as users have them: ill-formed tags (--bad_tags), CoNLL columns, suffixed tokens,
run_ner.py's tokens/ner_tags JSON and datasets folders, dotted type names; and the sample corpus
rewritten into each format trains to exactly the original's scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from conftest import ROOT, run_train
from data_scripts.errors import UserError
from data_scripts.corpora import load_corpus
from data_scripts.readers import (
    DataFormatError,
    ReadOptions,
    dataset_spans,
    read_column_files,
    read_hf_dataset,
    read_token_json_files,
)
from modeling.tag_schemes import Span, lenient_spans, spans_to_tags, tags_to_spans


def write_columns(path, sentences, sep=" "):
    """``sentences``: lists of column tuples; blank line between sentences."""
    path.write_text(
        "".join("".join(sep.join(cols) + "\n" for cols in sent) + "\n" for sent in sentences), encoding="utf-8"
    )
    return path


def line_of(sentences, k, i):
    """1-based line number of token ``i`` of sentence ``k`` in a file written by write_columns."""
    return sum(len(s) + 1 for s in sentences[:k]) + i + 1


# a BMES corpus whose sentence break falls inside an entity (sentences 1 and 2), as published corpora have
BMES = [
    [("我", "O"), ("在", "O"), ("北", "B-LOC"), ("京", "E-LOC")],
    [("他", "O"), ("去", "O"), ("中", "B-ORG"), ("国", "M-ORG")],
    [("银", "M-ORG"), ("行", "E-ORG"), ("了", "O")],
    [("张", "B-PER"), ("三", "E-PER"), ("好", "O")],
]


def test_bad_tags_error_names_file_line_and_the_flag(tmp_path):
    path = write_columns(tmp_path / "train.char.bmes", BMES)
    with pytest.raises(DataFormatError, match="--bad_tags repair") as err:
        read_column_files({"train": path}, scheme="BMES")
    assert str(err.value).startswith(f"{path}:{line_of(BMES, 1, 3)}: position 4: entity ORG opened at 2 is not closed")


def test_bad_tags_repair_changes_exactly_the_reported_sentences(tmp_path):
    path = write_columns(tmp_path / "train.char.bmes", BMES)
    dsd = read_column_files(
        {"train": path}, scheme="BMES", target_scheme="BIOS", options=ReadOptions(bad_tags="repair")
    )
    expected_places = [f"train.char.bmes:{line_of(BMES, 1, 3)}", f"train.char.bmes:{line_of(BMES, 2, 0)}"]
    assert dsd.report.repaired == {"train": expected_places}
    assert dsd.report.as_dict()["repaired_sentences"] == 2
    assert any("2 sentences with ill-formed tags repaired" in n and expected_places[0] in n for n in dsd.notes)
    spans = dataset_spans(dsd["train"], "BIOS")
    assert len(spans) == 4  # nothing dropped
    # the well-formed sentences read as strictly; the two broken ones leniently, each keeping its part of ORG
    assert spans[0] == [Span("LOC", 2, 4)] and spans[3] == [Span("PER", 0, 2)]
    assert spans[1] == [Span("ORG", 2, 4)] and spans[2] == [Span("ORG", 0, 2)]


def test_bad_tags_skip_drops_and_counts(tmp_path):
    path = write_columns(tmp_path / "train.char.bmes", BMES)
    dsd = read_column_files({"train": path}, scheme="BMES", options=ReadOptions(bad_tags="skip"))
    assert len(dsd["train"]) == 2
    assert dsd.report.as_dict()["skipped_sentences"] == 2
    assert dsd.report.skipped["train"] == [
        f"train.char.bmes:{line_of(BMES, 1, 3)}",
        f"train.char.bmes:{line_of(BMES, 2, 0)}",
    ]
    assert [s for s in dataset_spans(dsd["train"])] == [[Span("LOC", 2, 4)], [Span("PER", 0, 2)]]


@pytest.mark.parametrize(
    "tags,scheme,spans",
    [
        ("O I-PER I-PER O", "BIO", [("PER", 1, 3)]),
        ("B-PER I-LOC", "BIO", [("PER", 0, 1), ("LOC", 1, 2)]),
        ("E-LOC O S-PER", "BIOES", [("LOC", 0, 1), ("PER", 2, 3)]),
        ("B-A I-A", "BIEO", [("A", 0, 2)]),
        ("B-A E-A E-A", "BMES", [("A", 0, 2), ("A", 2, 3)]),
        ("S-A E-A", "BIOES", [("A", 0, 1), ("A", 1, 2)]),  # a single tag closes its entity
    ],
)
def test_lenient_reading_as_conlleval(tags, scheme, spans):
    assert lenient_spans(tags.split(), scheme) == [Span(*s) for s in spans]


def test_lenient_reading_equals_strict_on_well_formed_sequences():
    import random

    rng = random.Random(0)
    for scheme in ("BIO", "BIOS", "BIOES", "BIEO", "BMES"):
        for _ in range(300):
            n, pos, spans = rng.randint(1, 10), 0, []
            while pos < n:
                if rng.random() < 0.4:
                    length = rng.randint(1, min(4, n - pos))
                    spans.append(Span(rng.choice("AB"), pos, pos + length))
                    pos += length
                else:
                    pos += 1
            tags = spans_to_tags(spans, n, scheme)
            assert lenient_spans(tags, scheme) == tags_to_spans(tags, scheme) == spans


# a published layout: the character plus a word-segmentation digit, dotted type names
SUFFIXED = [[("张0", "B-PER.NAM"), ("三1", "I-PER.NAM"), ("在0", "O"), ("科0", "B-ORG.NAM"), ("大1", "I-ORG.NAM")]]


def test_suffixed_tokens_need_the_flag_and_are_reported(tmp_path):
    path = write_columns(tmp_path / "train.txt", SUFFIXED, sep="\t")
    with pytest.raises(DataFormatError, match="--token_first_char") as err:
        read_column_files({"train": path})
    assert str(err.value).startswith(f"{path}:1:")
    dsd = read_column_files({"train": path}, options=ReadOptions(token_first_char=True))
    assert dsd["train"][0]["tokens"] == list("张三在科大")
    assert sorted(dataset_spans(dsd["train"])[0]) == [Span("ORG.NAM", 3, 5), Span("PER.NAM", 0, 2)]
    assert any(
        "5 tokens of several characters read as their first character" in n and "'张0' -> '张'" in n for n in dsd.notes
    )


def test_conll_columns_detected_or_chosen(tmp_path):
    rows = [[("北", "NR", "x", "B-LOC"), ("京", "NR", "x", "I-LOC"), ("好", "VA", "x", "O")]]
    path = write_columns(tmp_path / "train.conll", rows)
    dsd = read_column_files({"train": path})
    assert dsd["train"][0]["tokens"] == list("北京好") and dataset_spans(dsd["train"]) == [[Span("LOC", 0, 2)]]
    assert any("4 columns: tokens from column 0, tags from column 3" in n for n in dsd.notes)
    moved = write_columns(tmp_path / "moved.conll", [[(t, c, p) for c, p, _, t in rows[0]]])  # tag first, POS last
    dsd = read_column_files({"train": moved}, options=ReadOptions(token_column=1, tag_column=0))
    assert dsd["train"][0]["tokens"] == list("北京好") and dataset_spans(dsd["train"]) == [[Span("LOC", 0, 2)]]
    bad = tmp_path / "bad.conll"
    bad.write_text("北 NR B-LOC\n京 I-LOC\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="expected 3 columns as on the file's first line") as err:
        read_column_files({"train": bad})
    assert str(err.value).startswith(f"{bad}:2:")


def test_token_json_strings_ints_and_errors(tmp_path):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"tokens": list("张三在北京"), "ner_tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]},
                {"tokens": list("好"), "ner_tags": ["O"]},
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    dsd = read_token_json_files({"train": jsonl})
    assert sorted(dataset_spans(dsd["train"])[0]) == [Span("LOC", 3, 5), Span("PER", 0, 2)]
    names = ["O", "B-PER", "I-PER"]
    array = tmp_path / "train.json"
    array.write_text(
        json.dumps([{"tokens": list("张三好"), "ner_tags": [1, 2, 0]}], ensure_ascii=False), encoding="utf-8"
    )
    with pytest.raises(DataFormatError, match="--tag_names"):
        read_token_json_files({"train": array})
    dsd = read_token_json_files({"train": array}, options=ReadOptions(tag_names=names))
    assert dataset_spans(dsd["train"]) == [[Span("PER", 0, 2)]]
    jsonl.write_text(
        json.dumps({"tokens": list("好"), "ner_tags": ["O"]})
        + "\n"
        + json.dumps({"tokens": list("张三"), "ner_tags": ["B-PER"]})
        + "\n"
    )
    with pytest.raises(DataFormatError, match="2 tokens but 1 tags") as err:
        read_token_json_files({"train": jsonl})
    assert str(err.value).startswith(f"{jsonl}:2:")
    jsonl.write_text(json.dumps({"tokens": list("张三"), "ner_tags": ["I-PER", "I-PER"]}) + "\n")
    with pytest.raises(DataFormatError, match="--bad_tags") as err:
        read_token_json_files({"train": jsonl}, scheme="BIO")
    assert str(err.value).startswith(f"{jsonl}:1:")
    dsd = read_token_json_files({"train": jsonl}, scheme="BIO", options=ReadOptions(bad_tags="repair"))
    assert dsd.report.repaired == {"train": ["train.jsonl:1"]} and dataset_spans(dsd["train"]) == [[Span("PER", 0, 2)]]


def test_save_to_disk_dataset_with_classlabel_and_custom_columns(tmp_path):
    features = Features(
        {"chars": Sequence(Value("string")), "labels": Sequence(ClassLabel(names=["O", "B-LOC", "I-LOC"]))}
    )
    DatasetDict(
        {
            "train": Dataset.from_dict(
                {"chars": [list("去北京"), list("好")], "labels": [[0, 1, 2], [0]]}, features=features
            ),
            "dev": Dataset.from_dict({"chars": [list("北京")], "labels": [[1, 2]]}, features=features),
        }
    ).save_to_disk(tmp_path / "ds")
    with pytest.raises(DataFormatError, match="--text_column_name"):
        read_hf_dataset(str(tmp_path / "ds"))
    dsd = read_hf_dataset(
        str(tmp_path / "ds"), options=ReadOptions(text_column_name="chars", label_column_name="labels")
    )
    assert set(dsd) == {"train", "validation"}
    assert dataset_spans(dsd["train"]) == [[Span("LOC", 1, 3)], []] and dataset_spans(dsd["validation"]) == [
        [Span("LOC", 0, 2)]
    ]
    with pytest.raises(UserError, match="neither a save_to_disk folder"):
        read_hf_dataset(str(tmp_path / "missing"))


# ---------------------------------------------------------------------------------------------
# end to end: the sample corpus in every format trains to the same scores


TINY = [
    "--num_memory", "0", "--use_self_attention", "false", "--lstm_hidden_size", "32", "--num_train_epochs", "2",
    "--learning_rate", "5e-3", "--save_strategy", "no", "--load_best_model_at_end", "false", "--seed", "7",
]  # fmt: skip


def rewrite_sample(folder, fmt: str, dotted: bool = False) -> list[str]:
    """The embedded sample corpus written as ``fmt``; returns the train.py data arguments that read it."""
    sample = load_corpus("sample", scheme="BIO")
    names = sample["train"].features["ner_tags"].feature.names
    rename = (lambda t: t if t == "O" else f"{t}.X") if dotted else (lambda t: t)
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": "train", "validation": "validation"}
    rows = {
        s: [
            (tokens, [rename(names[i]) for i in tags])
            for tokens, tags in zip(sample[s]["tokens"], sample[s]["ner_tags"])
        ]
        for s in splits
    }
    if fmt in ("conll", "suffixed"):
        paths = {}
        for s, sents in rows.items():
            cols = [
                [
                    (f"{c}{k % 2}" if fmt == "suffixed" else c, "NN", t) if fmt == "conll" else (f"{c}{k % 2}", t)
                    for k, (c, t) in enumerate(zip(tokens, tags))
                ]
                for tokens, tags in sents
            ]
            paths[s] = write_columns(folder / f"{s}.txt", cols, sep="\t")
        return ["--train_file", str(paths["train"]), "--validation_file", str(paths["validation"])] + (
            ["--token_first_char", "true"] if fmt == "suffixed" else []
        )
    if fmt == "jsonl":
        for s, sents in rows.items():
            (folder / f"{s}.jsonl").write_text(
                "".join(json.dumps({"tokens": t, "ner_tags": g}, ensure_ascii=False) + "\n" for t, g in sents),
                encoding="utf-8",
            )
        return ["--train_file", str(folder / "train.jsonl"), "--validation_file", str(folder / "validation.jsonl")]
    if fmt == "json-ids":
        label_names = sorted({t for sents in rows.values() for _, tags in sents for t in tags})
        for s, sents in rows.items():
            (folder / f"{s}.json").write_text(
                json.dumps(
                    [{"tokens": t, "ner_tags": [label_names.index(x) for x in g]} for t, g in sents],
                    ensure_ascii=False,
                ),
                encoding="utf-8",
            )
        return [
            "--train_file", str(folder / "train.json"), "--validation_file", str(folder / "validation.json"),
            "--tag_names", *label_names,
        ]  # fmt: skip
    if fmt == "save_to_disk":
        DatasetDict(
            {
                s: Dataset.from_dict({"tokens": [t for t, _ in sents], "ner_tags": [g for _, g in sents]})
                for s, sents in rows.items()
            }
        ).save_to_disk(folder / "ds")
        return ["--dataset_name", str(folder / "ds")]
    raise ValueError(fmt)


@pytest.fixture(scope="module")
def original_scores(tmp_path_factory):
    out = tmp_path_factory.mktemp("original")
    return run_train(["--output_dir", str(out), *TINY])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["conll", "suffixed", "jsonl", "json-ids", "save_to_disk"])
def test_the_sample_in_each_format_trains_to_the_original_scores(fmt, original_scores, tmp_path):
    args = rewrite_sample(tmp_path / "data", fmt)
    results = run_train(["--output_dir", str(tmp_path / "out"), *TINY, *args])
    for key in ("validation_f1", "validation_precision", "validation_recall", "train_loss"):
        assert results[key] == original_scores[key], (key, results[key], original_scores[key])
    assert results["data_read"]["repaired_sentences"] == results["data_read"]["skipped_sentences"] == 0


@pytest.mark.slow
def test_dotted_type_names_end_to_end(tmp_path):
    """PER.NAM-style types: training, the saved pipeline in a fresh process, the model card, the Space's answer."""
    args = rewrite_sample(tmp_path / "data", "jsonl", dotted=True)
    out = tmp_path / "out"
    run_train(
        ["--output_dir", str(out), *TINY, "--num_train_epochs", "8", "--learning_rate", "1e-2", *args]
    )  # long enough to find entities
    assert "name.X" in (out / "validation_report.txt").read_text(encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NER_MODEL": str(out)}
    card = subprocess.run(
        [
            sys.executable, str(ROOT / "push_to_hub.py"), str(out), "--output_dir", str(tmp_path / "repo"),
            "--dry-run", "--repo_id", "someone/dotted",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert card.returncode == 0, card.stderr[-3000:]
    readme = (tmp_path / "repo" / "README.md").read_text(encoding="utf-8")
    assert "name.X" in readme and "company.X" in readme
    script = (
        "import sys; sys.path.insert(0, 'space'); import app\n"
        "text = '林晓梅是青禾科技的首席执行官，她昨天在杭州市西湖区发布了新产品。'\n"
        "status, highlighted, table, _, _ = [c[0] for c in app.tag([text])]\n"
        "print(sorted({row[1] for row in table}), status)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    types = proc.stdout.strip().splitlines()[-1]
    assert ".X'" in types and "in 32 characters" in types, types
