"""Corpus readers: CLUENER JSON lines, column files, and the People's Daily 1998 raw corpus.

Every reader returns a :class:`datasets.DatasetDict` with columns ``id``, ``tokens`` (a list of
characters) and ``ner_tags`` (``Sequence(ClassLabel)`` in the requested tag scheme; absent in an
unlabelled split), and keeps what it did to the data in ``DatasetDict.read_notes``
(lines skipped and why, long lines split, ...), which :func:`print_summary` prints with the
sentence and entity counts. Malformed input raises :class:`DataFormatError` naming file and line.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence as SequenceFeature, Value

from modeling.text_splitting import split_windows

from modeling.tag_schemes import SCHEMES, Span, TagSequenceError, detect_scheme, label_list, spans_to_tags, split_tag, tags_to_spans


class DataFormatError(ValueError):
    """Malformed corpus input; the message starts with ``file:line:``."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line = str(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------------------------------
# building the DatasetDict


def _features(types: Iterable[str], scheme: str, labelled: bool = True) -> Features:
    cols = {"id": Value("string"), "tokens": SequenceFeature(Value("string"))}
    if labelled:
        cols["ner_tags"] = SequenceFeature(ClassLabel(names=label_list(types, scheme)))
    return Features(cols)


def build_dataset_dict(
    splits: dict[str, list[dict]], scheme: str, notes: list[str] | None = None, types: Iterable[str] | None = None
) -> DatasetDict:
    """``splits`` maps a split name to examples ``{"id", "tokens", "spans"}`` (``spans=None``: unlabelled).

    Tags are written in ``scheme``; the label set is the same for every split (the union of the
    entity types seen, or ``types``).
    """
    if scheme.upper() not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    scheme = scheme.upper()
    if types is None:
        types = {s.type for exs in splits.values() for ex in exs if ex["spans"] for s in ex["spans"]}
    types = sorted(types)
    out = DatasetDict()
    for name, examples in splits.items():
        labelled = all(ex["spans"] is not None for ex in examples)
        feats = _features(types, scheme, labelled)
        cols: dict[str, list] = {"id": [ex["id"] for ex in examples], "tokens": [list(ex["tokens"]) for ex in examples]}
        if labelled:
            cols["ner_tags"] = [spans_to_tags(ex["spans"], len(ex["tokens"]), scheme) for ex in examples]
        out[name] = Dataset.from_dict(cols, features=feats)
    out.read_notes = list(notes or [])
    out.tag_scheme = scheme
    return out


def dataset_spans(dataset: Dataset, scheme: str | None = None) -> list[list[Span]]:
    """The gold spans of every example of a labelled split."""
    names = dataset.features["ner_tags"].feature.names
    scheme = scheme or detect_scheme(names)
    return [tags_to_spans([names[t] for t in tags], scheme) for tags in dataset["ner_tags"]]


def print_summary(dsd: DatasetDict, title: str = "corpus", file=None) -> str:
    """Print (and return) sentences and entities per type for each split, plus the read notes."""
    lines = [f"== {title} ({getattr(dsd, 'tag_scheme', '?')} tags)"]
    types: list[str] = []
    counts: dict[str, Counter] = {}
    for name, ds in dsd.items():
        if "ner_tags" in ds.column_names:
            c = Counter(s.type for spans in dataset_spans(ds, getattr(dsd, "tag_scheme", None)) for s in spans)
            counts[name] = c
            types = sorted(set(types) | set(c))
    header = f"{'split':<8}{'sentences':>10}{'chars':>10}{'entities':>10}" + "".join(f"{t[:12]:>13}" for t in types)
    lines.append(header)
    for name, ds in dsd.items():
        n_chars = sum(len(t) for t in ds["tokens"])
        if name in counts:
            c = counts[name]
            row = f"{name:<8}{len(ds):>10}{n_chars:>10}{sum(c.values()):>10}" + "".join(f"{c[t]:>13}" for t in types)
        else:
            row = f"{name:<8}{len(ds):>10}{n_chars:>10}  (unlabelled)"
        lines.append(row)
    for note in getattr(dsd, "read_notes", []):
        lines.append(f"  note: {note}")
    text = "\n".join(lines)
    print(text, file=file)
    return text


def split_long_examples(
    examples: list[dict], max_chars: int, what: str = "sentences"
) -> tuple[list[dict], list[str]]:
    """Cut examples longer than ``max_chars`` at sentence punctuation, never inside an entity.

    Returns the new examples (ids get a ``#k`` suffix) and notes saying how many were split.
    """
    out, n_split, n_forced = [], 0, 0
    for ex in examples:
        spans = ex["spans"] or []
        windows, forced = split_windows(ex["tokens"], max_chars, [(s.start, s.end) for s in spans])
        if len(windows) == 1:
            out.append(ex)
            continue
        n_split += 1
        n_forced += forced
        for k, (a, b) in enumerate(windows):
            piece = [Span(s.type, max(s.start, a) - a, min(s.end, b) - a) for s in spans if s.start < b and s.end > a]
            out.append({"id": f"{ex['id']}#{k}", "tokens": ex["tokens"][a:b], "spans": piece if ex["spans"] is not None else None})
    notes = []
    if n_split:
        notes.append(
            f"{n_split} {what} longer than {max_chars} characters were split at sentence punctuation "
            f"into {n_split + len(out) - len(examples)} pieces"
            + (f"; {n_forced} entities longer than the window had to be cut" if n_forced else "; no entity was cut")
        )
    return out, notes


# ---------------------------------------------------------------------------------------------
# CLUENER JSON lines


def _read_cluener_file(path: Path) -> tuple[list[dict], list[str]]:
    examples, nested = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise DataFormatError(path, lineno, 'expected an object with a string "text"')
            text = obj["text"]
            ex_id = str(obj.get("id", lineno - 1))
            if "label" not in obj:
                examples.append({"id": ex_id, "tokens": list(text), "spans": None, "line": lineno})
                continue
            label = obj["label"] or {}
            if not isinstance(label, dict):
                raise DataFormatError(path, lineno, '"label" must be an object {type: {surface: [[start, end], ...]}}')
            spans = []
            for etype, surfaces in label.items():
                if not isinstance(surfaces, dict):
                    raise DataFormatError(path, lineno, f'label "{etype}" must map surface strings to span lists')
                for surface, positions in surfaces.items():
                    if not isinstance(positions, list):
                        raise DataFormatError(path, lineno, f'spans of "{surface}" must be a list of [start, end]')
                    for pos in positions:
                        if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(p, int) for p in pos)):
                            raise DataFormatError(path, lineno, f'span {pos!r} of "{surface}" is not [start, end_inclusive]')
                        start, end = pos
                        if not 0 <= start <= end < len(text):
                            raise DataFormatError(
                                path, lineno, f'span [{start}, {end}] of {etype} "{surface}" lies outside the text ({len(text)} characters)'
                            )
                        if text[start : end + 1] != surface:
                            raise DataFormatError(
                                path, lineno,
                                f'span [{start}, {end}] of {etype} reads "{text[start:end + 1]}", not "{surface}"',
                            )
                        spans.append(Span(etype, start, end + 1))
            # flat tagging: an entity nested inside a longer one is dropped (and reported);
            # two entities that cross each other are an error
            spans.sort(key=lambda s: (s.start, -s.end))
            kept: list[Span] = []
            for sp in spans:
                if kept and sp.start < kept[-1].end:
                    outer = kept[-1]
                    if sp.end > outer.end:
                        raise DataFormatError(
                            path, lineno,
                            f"entities {outer.type} [{outer.start}, {outer.end - 1}] and {sp.type} [{sp.start}, {sp.end - 1}] overlap",
                        )
                    nested.append(f"{path.name}:{lineno} {sp.type} '{text[sp.start:sp.end]}' inside {outer.type}")
                    continue
                kept.append(sp)
            examples.append({"id": ex_id, "tokens": list(text), "spans": kept, "line": lineno})
    return examples, nested


def read_cluener_files(files: dict[str, str | Path], scheme: str = "BIOS", max_chars: int | None = None) -> DatasetDict:
    """Read CLUENER-format JSON-lines files, one per split; spans are ``[start, end_inclusive]``.

    A file whose lines carry no ``"label"`` (the official test set) gives a split with no
    ``ner_tags`` column. ``max_chars`` splits longer texts at punctuation without cutting an entity
    (CLUENER texts are at most 50 characters).
    """
    raw, notes = {}, []
    for split, path in files.items():
        exs, nested = _read_cluener_file(Path(path))
        if nested:
            notes.append(f"{split}: {len(nested)} nested entities dropped (flat tagging keeps the outer one): " + "; ".join(nested[:5]))
        if max_chars:
            exs, n = split_long_examples(exs, max_chars)
            notes += [f"{split}: {x}" for x in n]
        empty = sum(1 for ex in exs if not ex["tokens"])
        if empty:
            notes.append(f"{split}: skipped {empty} empty texts")
            exs = [ex for ex in exs if ex["tokens"]]
        raw[split] = exs
    return build_dataset_dict(raw, scheme, notes)


def read_cluener(
    data_dir: str | Path,
    scheme: str = "BIOS",
    splits: Sequence[str] = ("train", "dev", "test"),
    max_chars: int | None = None,
) -> DatasetDict:
    """Read the CLUENER2020 folder layout: ``{split}.json`` for each split present."""
    data_dir = Path(data_dir)
    files = {split: data_dir / f"{split}.json" for split in splits if (data_dir / f"{split}.json").exists()}
    if not files:
        raise FileNotFoundError(f"no CLUENER split ({', '.join(s + '.json' for s in splits)}) in {data_dir}")
    return read_cluener_files(files, scheme, max_chars)


# ---------------------------------------------------------------------------------------------
# column files

_COLUMN_LINE = re.compile(r"^(.)[\t ]+(\S+)$")


def _read_column_file(path: Path, encoding: str = "utf-8") -> tuple[list[dict], dict]:
    """Sentences of ``(chars, tags, tag line numbers)``; blank lines separate sentences."""
    sentences, chars, tags, lines = [], [], [], []
    stats = {"blank_runs": 0}
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()

    def flush(lineno: int) -> None:
        nonlocal chars, tags, lines
        if chars:
            sentences.append({"id": str(len(sentences)), "tokens": chars, "tags": tags, "lines": lines, "first_line": lines[0]})
        chars, tags, lines = [], [], []

    for lineno, raw_line in enumerate(raw_lines, 1):
        try:
            line = raw_line.decode(encoding).rstrip("\r")
        except UnicodeDecodeError as e:
            raise DataFormatError(path, lineno, f"cannot be decoded as {encoding} (byte {e.start}); pass the file's encoding") from None
        if not line.strip():
            if not chars:
                stats["blank_runs"] += 1
            flush(lineno)
            continue
        m = _COLUMN_LINE.match(line)
        if not m:
            parts = line.split()
            if len(parts) == 2:
                raise DataFormatError(path, lineno, f"expected one character in the first column, got {parts[0]!r}")
            raise DataFormatError(path, lineno, f"expected 2 columns '<char> <tag>', got {len(parts)}: {line!r}")
        ch, tag = m.group(1), m.group(2)
        chars.append(ch)
        tags.append(tag)
        lines.append(lineno)
    flush(len(raw_lines) + 1)
    return sentences, stats


def read_column_files(
    files: dict[str, str | Path],
    scheme: str | None = None,
    target_scheme: str = "BIOS",
    encoding: str = "utf-8",
    max_chars: int | None = None,
) -> DatasetDict:
    """Read ``char<TAB or SPACE>tag`` files, one per split, blank line between sentences.

    ``scheme`` is the files' tag scheme (BIO, BIOS, BIOES, BIEO, BMES); ``None`` detects it from
    the tags of all files together. Tags are rewritten in ``target_scheme``. Sentences longer
    than ``max_chars`` are split at punctuation without cutting an entity.
    """
    read, notes = {}, []
    for split, path in files.items():
        read[split] = (Path(path), *_read_column_file(Path(path), encoding))
    all_tags = {t for _, sents, _ in read.values() for s in sents for t in s["tags"]}
    for split, (path, sents, _) in read.items():
        for s in sents:
            for t, ln in zip(s["tags"], s["lines"]):
                try:
                    split_tag(t)
                except TagSequenceError:
                    raise DataFormatError(path, ln, f"unknown tag {t!r} (expected 'O' or '<prefix>-<type>')") from None
    source = (scheme or detect_scheme(all_tags)).upper()
    if source not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    notes.append(f"source tag scheme {source} ({'declared' if scheme else 'detected'})")
    raw = {}
    for split, (path, sents, stats) in read.items():
        exs = []
        for s in sents:
            try:
                spans = tags_to_spans(s["tags"], source, strict=True)
            except TagSequenceError as e:
                pos = int(re.match(r"position (\d+)", str(e)).group(1))
                ln = s["lines"][min(pos, len(s["lines"]) - 1)]
                raise DataFormatError(path, ln, str(e)) from None
            exs.append({"id": s["id"], "tokens": s["tokens"], "spans": spans})
        if max_chars:
            exs, n = split_long_examples(exs, max_chars)
            notes += [f"{split}: {x}" for x in n]
        if stats["blank_runs"] > 1:
            notes.append(f"{split}: {stats['blank_runs']} extra blank lines between sentences were ignored")
        raw[split] = exs
    return build_dataset_dict(raw, target_scheme, notes)


# ---------------------------------------------------------------------------------------------
# People's Daily, January 1998 (PKU word/POS annotation)

PD_ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
PD_PAPER_SPLIT = (15850, 3962)
_DOC_ID = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}/m$")


def parse_peoples_daily_line(line: str, path: str | Path = "<line>", lineno: int | None = None) -> tuple[list[str], list[Span]]:
    """One annotated paragraph -> characters and PER/LOC/ORG spans.

    Drops the leading document id; ``nr`` surname + ``nr`` given name form one PER; ``ns`` is LOC
    and ``nt`` ORG; a bracketed compound ``[w1/p w2/p]nt`` / ``]ns`` is one entity (its parts are
    not tagged separately), other compounds (``]nz``, ``]l``, ``]i``) contribute their parts.
    """
    tokens = line.split()
    if not tokens:
        return [], []
    if not _DOC_ID.match(tokens[0]):
        raise DataFormatError(path, lineno, f"expected a document id like 19980101-01-001-001/m first, got {tokens[0]!r}")
    words: list[tuple[str, str]] = []  # (word, pos)
    compounds: list[tuple[int, int, str]] = []  # word index range [a, b) and compound tag
    open_at = None
    for tok in tokens[1:]:
        opening = tok.startswith("[") and "/" in tok[1:]
        if opening:
            if open_at is not None:
                raise DataFormatError(path, lineno, f"nested '[' at {tok!r}")
            open_at = len(words)
            tok = tok[1:]
        closing_tag = None
        m = re.match(r"^(.*)\](\w+)$", tok)
        if m and "/" in m.group(1):
            tok, closing_tag = m.group(1), m.group(2)
        if "/" not in tok:
            raise DataFormatError(path, lineno, f"token {tok!r} has no '/pos'")
        word, pos = tok.rsplit("/", 1)
        if not word:
            raise DataFormatError(path, lineno, f"empty word in token {tok!r}")
        words.append((word, pos))
        if closing_tag is not None:
            if open_at is None:
                raise DataFormatError(path, lineno, f"']{closing_tag}' without '['")
            compounds.append((open_at, len(words), closing_tag))
            open_at = None
    if open_at is not None:
        raise DataFormatError(path, lineno, "'[' compound is never closed")

    # entity units over word indices
    units: list[tuple[int, int, str]] = []
    in_compound = [False] * len(words)
    for a, b, tag in compounds:
        if tag in PD_ENTITY_TYPES:
            units.append((a, b, PD_ENTITY_TYPES[tag]))
            for k in range(a, b):
                in_compound[k] = True
    k = 0
    while k < len(words):
        word, pos = words[k]
        if in_compound[k] or pos not in PD_ENTITY_TYPES:
            k += 1
            continue
        end = k + 1
        if pos == "nr" and k + 1 < len(words) and words[k + 1][1] == "nr" and not in_compound[k + 1] and len(word) <= 2:
            end = k + 2  # surname + given name
        units.append((k, end, PD_ENTITY_TYPES[pos]))
        k = end
    offsets = [0]
    for word, _ in words:
        offsets.append(offsets[-1] + len(word))
    chars = [c for word, _ in words for c in word]
    spans = sorted((Span(t, offsets[a], offsets[b]) for a, b, t in units), key=lambda s: s.start)
    return chars, spans


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def read_peoples_daily_1998(
    path: str | Path,
    scheme: str = "BIOS",
    max_chars: int = 126,
    test_ratio: float = 0.2,
    seed: int = 42,
    encoding: str = "gbk",
) -> DatasetDict:
    """Read the raw January 1998 corpus (GBK): one example per non-empty line, seeded train/test split.

    Lines are split into train/test (``test_ratio``) *before* long lines are cut at sentence
    punctuation to fit ``max_chars``, so the pieces of one paragraph stay in one split.
    """
    path = Path(path)
    data = path.read_bytes()
    if encoding.lower() in ("gbk", "gb2312", "gb18030") and not data.isascii() and _is_utf8(data):
        # UTF-8 Chinese often decodes as (wrong) GBK without error: refuse the file rather than read mojibake
        lineno = next(i for i, l in enumerate(data.split(b"\n"), 1) if not l.isascii())
        raise DataFormatError(path, lineno, f"cannot be decoded as {encoding}: the file is UTF-8; pass encoding='utf-8'")
    examples, blank = [], 0
    # split on \n only, as editors number lines (some lines of the 1998 file end in \r\r\n)
    for lineno, raw_line in enumerate(data.split(b"\n"), 1):
        raw_line = raw_line.rstrip(b"\r")
        try:
            line = raw_line.decode(encoding)
        except UnicodeDecodeError as e:
            raise DataFormatError(path, lineno, f"cannot be decoded as {encoding} (byte {e.start}); is this the GBK file?") from None
        if not line.strip():
            blank += 1
            continue
        chars, spans = parse_peoples_daily_line(line, path, lineno)
        examples.append({"id": f"{line.split(None, 1)[0][:-2]}@{lineno}", "tokens": chars, "spans": spans})
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = round(len(examples) * test_ratio)
    test_idx = set(order[:n_test])
    train = [ex for i, ex in enumerate(examples) if i not in test_idx]
    test = [ex for i, ex in enumerate(examples) if i in test_idx]
    notes = [
        f"{len(examples)} non-empty lines ({blank} blank lines skipped) split {len(train)}/{len(test)} "
        f"(seed {seed}, test ratio {test_ratio}); the paper reports {PD_PAPER_SPLIT[0]}/{PD_PAPER_SPLIT[1]}"
    ]
    train, n1 = split_long_examples(train, max_chars, "train lines")
    test, n2 = split_long_examples(test, max_chars, "test lines")
    notes += n1 + n2
    return build_dataset_dict({"train": train, "test": test}, scheme, notes, types=PD_ENTITY_TYPES.values())
