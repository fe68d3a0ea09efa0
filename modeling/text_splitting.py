"""Cutting text longer than a model's window into pieces, preferring sentence boundaries.

The one place the project decides where long text is cut: corpus readers use it to split long
training lines without cutting an entity, and the inference pipeline uses it on raw text.
"""

from __future__ import annotations

from typing import Iterable, Sequence

SENTENCE_END = "。！？!?；;…\n"
CLAUSE_END = "，,、：:）)」』”’"


def split_windows(
    text: Sequence[str], max_len: int, protected: Iterable[tuple[int, int]] = ()
) -> tuple[list[tuple[int, int]], int]:
    """Cut ``text`` into consecutive windows ``[start, end)`` of at most ``max_len`` characters.

    Each cut goes after the last sentence-final punctuation mark that fits, else after the last
    clause mark, else at the window's end; a cut never falls inside a ``protected`` span
    ``[start, end)`` (an entity) unless that span alone is longer than ``max_len``.

    Returns the windows and how many protected spans had to be cut (0 unless a span is longer
    than ``max_len``).
    """
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    n = len(text)
    if n <= max_len:
        return [(0, n)], 0
    # blocked[k]: cutting before position k would split a protected span
    blocked = [False] * (n + 1)
    spans = list(protected)
    for start, end in spans:
        for k in range(start + 1, end):
            blocked[k] = True
    windows: list[tuple[int, int]] = []
    start, forced = 0, 0
    while n - start > max_len:
        limit = start + max_len
        cut = None
        for marks in (SENTENCE_END, CLAUSE_END, None):
            for k in range(limit, start, -1):
                if not blocked[k] and (marks is None or text[k - 1] in marks):
                    cut = k
                    break
            if cut is not None:
                break
        if cut is None:  # a protected span longer than the window
            cut = limit
            forced += sum(1 for s, e in spans if s < cut < e)
        windows.append((start, cut))
        start = cut
    windows.append((start, n))
    return windows, forced


def sentence_pieces(text: Sequence[str]) -> list[tuple[int, int]]:
    """``[start, end)`` of each sentence: cut after every sentence-final mark (the mark stays with its sentence)."""
    pieces, start = [], 0
    for k, ch in enumerate(text):
        if ch in SENTENCE_END:
            pieces.append((start, k + 1))
            start = k + 1
    if start < len(text):
        pieces.append((start, len(text)))
    return pieces


def plan_windows(text: Sequence[str], max_len: int, stride: int | None = None) -> list[tuple[int, int, int, int]]:
    """How the inference pipeline reads a text of any length: ``(start, end, own_start, own_end)`` windows.

    A text that fits is one window. A longer one is cut into its sentences (:func:`sentence_pieces`);
    a sentence longer than ``max_len`` is read by windows of ``max_len`` characters every ``stride``
    (default ``max_len // 2``) characters. Every character is *owned* by exactly one window, the
    one where it lies farthest from an edge: ``[own_start, own_end)``. An entity is taken from the
    window that owns its middle character, so an entity near a cut is neither lost nor counted twice.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    n = len(text)
    if n <= max_len:
        return [(0, n, 0, n)]
    stride = stride or max(1, max_len // 2)
    if not 0 < stride <= max_len:
        raise ValueError(f"stride must be in [1, {max_len}], got {stride}")
    windows = []
    for a, b in sentence_pieces(text):
        if b - a <= max_len:
            windows.append((a, b, a, b))
            continue
        starts = list(range(a, b - max_len, stride)) + [b - max_len]
        bounds = (
            [a] + [(nxt + (cur + max_len)) // 2 for cur, nxt in zip(starts, starts[1:])] + [b]
        )  # middle of each overlap
        windows += [(s, s + max_len, bounds[k], bounds[k + 1]) for k, s in enumerate(starts)]
    return windows
