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
