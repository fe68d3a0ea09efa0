"""From the tags of a text's windows to its entities: the rules every pipeline of this project shares (the torch
one, :class:`.pipeline_ner.ChineseNERPipeline`, and the ONNX Runtime one), in plain Python.

An entity is taken from the window that owns its middle character, never begins or ends with a blank character
(:func:`trim_blank`), and two that still overlap across a cut are settled by :func:`without_overlaps`.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

from .tag_schemes import tags_to_spans

BLANK_CATEGORIES = frozenset(
    {"Cc", "Cf", "Cs"}
)  # control, format (zero-width), surrogate; str.isspace covers the separators


def window_entities(
    text: str, pieces: Sequence[tuple[tuple, Sequence[int], Sequence[float]]], id2label: dict, scheme: str
) -> list[dict]:
    """The entities of ``text`` from its windows in text order: each piece is the window
    (``start, end, own_start, own_end`` of ``text_splitting.plan_windows``), its characters' tag ids and their
    tags' probabilities. Entity dicts: ``entity_group``, ``score`` (the mean probability), ``word``, ``start``,
    ``end``."""
    candidates = []
    for (start, end, own_start, own_end), tag_ids, scores in pieces:
        tags = [id2label[t] for t in tag_ids]
        for span in tags_to_spans(tags, scheme, strict=False):
            a, b = trim_blank(text, start + span.start, start + span.end)
            if a == b or not own_start <= (a + b - 1) // 2 < own_end:
                continue  # only blanks, or another window owns this entity's middle
            entity = {
                "entity_group": span.type,
                "score": float(sum(scores[a - start : b - start]) / (b - a)),
                "word": text[a:b],
                "start": a,
                "end": b,
            }
            # how far the entity lies from a cut of the text (a window edge that is not the text's own edge)
            margin = min(a - start if start > 0 else len(text), end - b if end < len(text) else len(text))
            candidates.append((entity, margin))
    return without_overlaps(candidates)


def is_blank(ch: str) -> bool:
    """Whitespace, zero-width, control and lone-surrogate characters: what the tokenizer cannot read
    as a character (:data:`.char_tokenization.SPACE_TOKEN` or ``[UNK]``); an entity never starts or ends with one."""
    return ch.isspace() or unicodedata.category(ch) in BLANK_CATEGORIES


def trim_blank(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without blank characters (:func:`is_blank`) at either end; empty if only blanks."""
    while start < end and is_blank(text[start]):
        start += 1
    while end > start and is_blank(text[end - 1]):
        end -= 1
    return start, end


def without_overlaps(candidates: list[tuple[dict, int]]) -> list[dict]:
    """Entities sorted by offset, of which no two overlap. Two stride windows over one long sentence
    can each own the middle of a different entity, and the two can overlap across the cut: the one
    that lies farther from its window's cut (the larger margin) is kept, since it saw more context."""
    kept: list[tuple[dict, int]] = []
    for entity, margin in sorted(candidates, key=lambda c: (c[0]["start"], c[0]["end"])):
        if kept and entity["start"] < kept[-1][0]["end"]:
            if margin > kept[-1][1]:
                kept[-1] = (entity, margin)  # it starts after the entity before the replaced one ends
            continue
        kept.append((entity, margin))
    return [entity for entity, _ in kept]
