"""The embedded sample corpus: ``sample_corpus.txt`` (inline markup) -> CLUENER JSON lines.

``python -m data_scripts.sample`` rewrites ``train.json`` and ``dev.json`` beside this file from
the markup, where an entity is written ``[[type|surface]]``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent
MARKUP = SAMPLE_DIR / "sample_corpus.txt"
CLUENER_TYPES = (
    "address",
    "book",
    "company",
    "game",
    "government",
    "movie",
    "name",
    "organization",
    "position",
    "scene",
)
_ENTITY = re.compile(r"\[\[([a-z]+)\|([^\]|]+)\]\]")


def parse_markup(path: Path = MARKUP) -> dict[str, list[dict]]:
    """Markup lines -> ``{split: [{"text", "label"}]}`` in CLUENER's layout (``end`` inclusive)."""
    from data_scripts.readers import DataFormatError

    splits: dict[str, list[dict]] = {}
    split = "train"
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("## "):
            split = line[3:].strip()
            continue
        if not line.strip() or line.startswith("#"):
            continue
        text, label, pos = "", {}, 0
        for m in _ENTITY.finditer(line):
            etype, surface = m.group(1), m.group(2)
            if etype not in CLUENER_TYPES:
                raise DataFormatError(path, lineno, f"unknown entity type {etype!r}")
            text += line[pos : m.start()]
            start = len(text)
            text += surface
            label.setdefault(etype, {}).setdefault(surface, []).append([start, len(text) - 1])
            pos = m.end()
        text += line[pos:]
        if "[[" in text or "]]" in text:
            raise DataFormatError(path, lineno, "unbalanced [[type|surface]] markup")
        splits.setdefault(split, []).append({"text": text, "label": label})
    return splits


def write_json_lines(out_dir: Path = SAMPLE_DIR) -> dict[str, int]:
    counts = {}
    for split, examples in parse_markup().items():
        with open(out_dir / f"{split}.json", "w", encoding="utf-8") as f:
            for ex in examples:
                f.write(json.dumps(ex, ensure_ascii=False) + "\n")
        counts[split] = len(examples)
    return counts
