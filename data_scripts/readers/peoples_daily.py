"""People's Daily, January 1998: the raw PKU word/POS corpus (GBK), with PER/LOC/ORG from ``nr``/``ns``/``nt``."""

from __future__ import annotations

import random
import re
from pathlib import Path

from modeling.tag_schemes import Span

from .corpus import Corpus, DataFormatError, build_corpus, split_long_examples

PD_ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
PD_PAPER_SPLIT = (15850, 3962)
_DOC_ID = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}/m$")


def parse_peoples_daily_line(
    line: str, path: str | Path = "<line>", lineno: int | None = None
) -> tuple[list[str], list[Span]]:
    """One annotated paragraph -> characters and PER/LOC/ORG spans.

    Drops the leading document id; ``nr`` surname + ``nr`` given name form one PER; ``ns`` is LOC
    and ``nt`` ORG; a bracketed compound ``[w1/p w2/p]nt`` / ``]ns`` is one entity (its parts are
    not tagged separately), other compounds (``]nz``, ``]l``, ``]i``) contribute their parts.
    """
    tokens = line.split()
    if not tokens:
        return [], []
    if not _DOC_ID.match(tokens[0]):
        raise DataFormatError(
            path, lineno, f"expected a document id like 19980101-01-001-001/m first, got {tokens[0]!r}"
        )
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
        if (
            pos == "nr"
            and k + 1 < len(words)
            and words[k + 1][1] == "nr"
            and not in_compound[k + 1]
            and len(word) <= 2
        ):
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
) -> Corpus:
    """Read the raw January 1998 corpus (GBK): one example per non-empty line, seeded train/test split.

    Lines are split into train/test (``test_ratio``) *before* long lines are cut at sentence
    punctuation to fit ``max_chars``, so the pieces of one paragraph stay in one split.
    """
    path = Path(path)
    data = path.read_bytes()
    if encoding.lower() in ("gbk", "gb2312", "gb18030") and not data.isascii() and _is_utf8(data):
        # UTF-8 Chinese often decodes as (wrong) GBK without error: refuse the file rather than read mojibake
        lineno = next(i for i, l in enumerate(data.split(b"\n"), 1) if not l.isascii())
        raise DataFormatError(
            path, lineno, f"cannot be decoded as {encoding}: the file is UTF-8; pass encoding='utf-8'"
        )
    examples, blank = [], 0
    # split on \n only, as editors number lines (some lines of the 1998 file end in \r\r\n)
    for lineno, raw_line in enumerate(data.split(b"\n"), 1):
        raw_line = raw_line.rstrip(b"\r")
        try:
            line = raw_line.decode(encoding)
        except UnicodeDecodeError as e:
            raise DataFormatError(
                path, lineno, f"cannot be decoded as {encoding} (byte {e.start}); is this the GBK file?"
            ) from None
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
    return build_corpus({"train": train, "test": test}, scheme, notes, types=PD_ENTITY_TYPES.values())
