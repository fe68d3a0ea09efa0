"""Readers against the real files in ../shared/data, and every malformed-input error."""

import json
import random
import re

import pytest

from data_scripts.readers import (
    DataFormatError,
    PD_PAPER_SPLIT,
    dataset_spans,
    parse_peoples_daily_line,
    print_summary,
    read_cluener,
    read_column_files,
    read_peoples_daily_1998,
    split_long_examples,
)
from modeling.tag_schemes import Span, spans_to_tags


def raw_cluener_entities(path):
    """Entity mentions per type counted straight from the JSON (independent of the reader)."""
    counts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        for etype, surfaces in json.loads(line)["label"].items():
            counts[etype] = counts.get(etype, 0) + sum(len(v) for v in surfaces.values())
    return counts


def test_cluener_counts(data_dir, capsys):
    dsd = read_cluener(data_dir / "cluener")
    assert {k: len(v) for k, v in dsd.items()} == {"train": 10748, "dev": 1343, "test": 1345}
    assert "ner_tags" not in dsd["test"].column_names  # the official test set is unlabelled
    summary = print_summary(dsd, "cluener")
    assert "10748" in summary and "(unlabelled)" in summary
    # entities per type equal the raw JSON's, less the nested ones the reader reports
    for split in ("train", "dev"):
        raw = raw_cluener_entities(data_dir / "cluener" / f"{split}.json")
        got = {}
        for spans in dataset_spans(dsd[split], "BIOS"):
            for s in spans:
                got[s.type] = got.get(s.type, 0) + 1
        nested = sum(int(m) for m in re.findall(rf"{split}: (\d+) nested", " ".join(dsd.notes)))
        assert sum(raw.values()) - sum(got.values()) == nested
        assert len(got) == 10
    assert any("nested entities dropped" in n and "train.json:1507" in n for n in dsd.notes)
    # every gold span reads back its surface string
    line = json.loads((data_dir / "cluener" / "train.json").read_text(encoding="utf-8").splitlines()[0])
    tokens = dsd["train"][0]["tokens"]
    for etype, surfaces in line["label"].items():
        for surface, positions in surfaces.items():
            for start, end in positions:
                assert "".join(tokens[start : end + 1]) == surface


def test_msra_counts(data_dir):
    dsd = read_column_files({"train": data_dir / "msra" / "train.bio", "test": data_dir / "msra" / "test.bio"})
    assert len(dsd["train"]) == 45000 and len(dsd["test"]) == 3442
    assert "source tag scheme BIO (detected)" in dsd.notes
    raw_b = sum(1 for line in open(data_dir / "msra" / "test.bio", encoding="utf-8") if "\tB-" in line)
    assert sum(len(s) for s in dataset_spans(dsd["test"])) == raw_b
    assert set(dsd["train"].features["ner_tags"].feature.names) == {
        "O",
        "B-LOC",
        "I-LOC",
        "S-LOC",
        "B-ORG",
        "I-ORG",
        "S-ORG",
        "B-PER",
        "I-PER",
        "S-PER",
    }


def test_peoples_daily_split(data_dir):
    path = data_dir / "peoples_daily_1998" / "199801.txt"
    dsd = read_peoples_daily_1998(path, max_chars=126, seed=42)
    lines = [l for l in path.read_bytes().decode("gbk").splitlines() if l.strip()]
    note = dsd.notes[0]
    m = re.search(r"(\d+) non-empty lines .* split (\d+)/(\d+)", note)
    total, train, test = map(int, m.groups())
    assert total == len(lines) == 19484
    assert train + test == total and test == round(0.2 * total)
    assert f"{PD_PAPER_SPLIT[0]}/{PD_PAPER_SPLIT[1]}" in note
    # the pieces of a line stay in one split and no example is longer than the window
    base = lambda i: i.split("#")[0]  # noqa: E731  (pieces of a line: <doc id>@<line>#<k>)
    train_ids, test_ids = {base(i) for i in dsd["train"]["id"]}, {base(i) for i in dsd["test"]["id"]}
    assert len(train_ids) == train and len(test_ids) == test and not train_ids & test_ids
    assert max(len(t) for t in dsd["train"]["tokens"]) <= 126
    assert any("no entity was cut" in n for n in dsd.notes)
    print_summary(dsd, "peoples_daily")


def test_peoples_daily_split_is_seeded(tmp_path):
    """The same seed gives the same split, another seed another (on 50 lines: reading the real file takes 6 s)."""
    path = tmp_path / "pd.txt"
    lines = [f"19980101-01-{k:03d}-001/m  [中央/n  电视台/n]nt  第{k}/m  期/n" for k in range(50)]
    path.write_bytes("\n\n".join(lines).encode("gbk"))
    first = read_peoples_daily_1998(path, seed=42)["test"]["id"]
    assert len(first) == 10
    assert read_peoples_daily_1998(path, seed=42)["test"]["id"] == first
    assert read_peoples_daily_1998(path, seed=7)["test"]["id"] != first


def test_peoples_daily_line_rules():
    line = (
        "19980101-01-001-002/m  中共中央/nt  总书记/n  、/w  江/nr  泽民/nr  在/p  [中央/n  电视台/n]nt  "
        "[香港/ns  特别/a  行政区/n]ns  克林顿/nr  北京/ns"
    )
    chars, spans = parse_peoples_daily_line(line)
    text = "".join(chars)
    assert text.startswith("中共中央总书记")  # the document id is not text
    assert [(s.type, text[s.start : s.end]) for s in spans] == [
        ("ORG", "中共中央"),
        ("PER", "江泽民"),
        ("ORG", "中央电视台"),
        ("LOC", "香港特别行政区"),
        ("PER", "克林顿"),
        ("LOC", "北京"),
    ]


def test_split_long_examples_never_cuts_an_entity():
    rng = random.Random(0)
    for _ in range(100):
        n = rng.randint(50, 300)
        tokens = [rng.choice("这是一个句子，还有。") for _ in range(n)]
        spans, pos = [], 0
        while pos < n - 6:
            pos += rng.randint(1, 10)
            size = rng.randint(1, 6)
            if pos + size <= n:
                spans.append(Span("LOC", pos, pos + size))
            pos += size
        out, notes = split_long_examples([{"id": "x", "tokens": tokens, "spans": spans}], 40)
        assert sum(len(o["tokens"]) for o in out) == n
        assert all(len(o["tokens"]) <= 40 for o in out)
        assert sum(len(o["spans"]) for o in out) == len(spans)
        rebuilt = [t for o in out for t in spans_to_tags(o["spans"], len(o["tokens"]), "BIOES")]
        assert rebuilt == spans_to_tags(spans, n, "BIOES")


# ---------------------------------------------------------------------------------------------
# malformed input -> DataFormatError naming file and line


def _cluener(tmp_path, lines):
    (tmp_path / "train.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


GOOD = json.dumps({"text": "张三在北京", "label": {"name": {"张三": [[0, 1]]}}}, ensure_ascii=False)


@pytest.mark.parametrize(
    "bad,message",
    [
        ('{"text": "张三", "label": ', "invalid JSON"),
        (
            json.dumps({"text": "张三在北京", "label": {"name": {"张三": [[0, 7]]}}}, ensure_ascii=False),
            "outside the text",
        ),
        (
            json.dumps({"text": "张三在北京", "label": {"name": {"李四": [[0, 1]]}}}, ensure_ascii=False),
            'reads "张三", not "李四"',
        ),
        (
            json.dumps(
                {"text": "张三在北京", "label": {"name": {"张三在": [[0, 2]]}, "address": {"在北京": [[2, 4]]}}},
                ensure_ascii=False,
            ),
            "overlap",
        ),
        (json.dumps({"txt": "张三"}, ensure_ascii=False), 'string "text"'),
    ],
)
def test_cluener_errors_name_file_and_line(tmp_path, bad, message):
    folder = _cluener(tmp_path, [GOOD, GOOD, bad])
    with pytest.raises(DataFormatError, match=re.escape(message)) as err:
        read_cluener(folder)
    assert str(err.value).startswith(f"{folder / 'train.json'}:3:")
    assert err.value.line == 3


@pytest.mark.parametrize(
    "bad_line,message",
    [
        ("北 B-LOC extra", "expected 2 columns"),
        ("北京 B-LOC", "one character"),
        ("北 X-LOC", "unknown tag"),
        ("北", "expected 2 columns"),
    ],
)
def test_column_errors_name_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "train.txt"
    path.write_text(f"我 O\n在 O\n\n{bad_line}\n京 I-LOC\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=re.escape(message)) as err:
        read_column_files({"train": path})
    assert str(err.value).startswith(f"{path}:4:")


def test_column_ill_formed_sequence_names_the_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("我 O\n在 O\n北 B-LOC\n京 E-LOC\n\n上 O\n海 E-LOC\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="does not continue") as err:
        read_column_files({"train": path}, scheme="BIOES")
    assert str(err.value).startswith(f"{path}:7:")


def test_wrong_encoding(tmp_path, data_dir):
    gbk = tmp_path / "train.txt"
    gbk.write_bytes("我 O\n在 O\n\n北 B-LOC\n京 I-LOC\n".encode("gbk"))
    with pytest.raises(DataFormatError, match="cannot be decoded as utf-8") as err:
        read_column_files({"train": gbk})
    assert str(err.value).startswith(f"{gbk}:1:")
    utf8 = tmp_path / "pd.txt"
    utf8.write_text("19980101-01-001-001/m  迈向/v  充满/v  希望/n\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="cannot be decoded as gbk") as err:
        read_peoples_daily_1998(utf8)
    assert str(err.value).startswith(f"{utf8}:1:")


def test_peoples_daily_errors(tmp_path):
    path = tmp_path / "pd.txt"
    path.write_bytes("19980101-01-001-001/m  迈向/v\n\n19980101-01-001-002/m  [中央/n  电视台/n\n".encode("gbk"))
    with pytest.raises(DataFormatError, match="never closed") as err:
        read_peoples_daily_1998(path)
    assert str(err.value).startswith(f"{path}:3:")
    path.write_bytes("迈向/v  充满/v\n".encode("gbk"))
    with pytest.raises(DataFormatError, match="document id"):
        read_peoples_daily_1998(path)
    # line numbers as an editor counts them, also after lines ending in \r\r\n (as some in the 1998 file do)
    path.write_bytes("19980101-01-001-001/m  迈向/v\r\r\n\r\n19980101-01-001-002/m  [中央/n\r\n".encode("gbk"))
    with pytest.raises(DataFormatError, match="never closed") as err:
        read_peoples_daily_1998(path)
    assert err.value.line == 3


@pytest.mark.parametrize("scheme", ["BIO", "BIOS", "BIOES", "BIEO", "BMES"])
def test_unseen_column_corpus_in_any_scheme(tmp_path, scheme):
    """A corpus the code has never seen, tab- or space-separated, in any scheme, with a space character."""
    sentences = [
        ("张三在 北京工作", [Span("PER", 0, 2), Span("LOC", 4, 6)]),
        ("李去了沪", [Span("PER", 0, 1), Span("LOC", 3, 4)]),
    ]
    sep = "\t" if scheme in ("BIO", "BIEO") else " "
    lines = []
    for text, spans in sentences:
        lines += [f"{c}{sep}{t}" for c, t in zip(text, spans_to_tags(spans, len(text), scheme))] + [""]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    dsd = read_column_files({"train": path}, target_scheme="BIOES")
    assert ["".join(t) for t in dsd["train"]["tokens"]] == [s[0] for s in sentences]
    assert dataset_spans(dsd["train"], "BIOES") == [s[1] for s in sentences]
