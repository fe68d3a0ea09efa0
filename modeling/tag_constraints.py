"""Which tag may follow which: the transition constraints of a tag scheme, for constrained decoding.

A decoder that picks one tag at a time (``Seq2SeqAttnTagger``) can write sequences no scheme
allows, such as ``O I-PER`` or ``B-PER E-LOC``. With these masks it never does: a tag is only
chosen where the scheme allows it after the previous one, at the start, and at the end.

Kept in ``modeling/`` (not ``data_scripts/``) so that a saved model folder carries it.
"""

from __future__ import annotations

import torch

from .tag_schemes import _PREFIXES, split_tag


def transition_masks(id2label: dict[int, str], scheme: str) -> tuple[torch.BoolTensor, torch.BoolTensor]:
    """``allowed [num_labels + 1, num_labels]`` and ``can_end [num_labels]``.

    ``allowed[p, t]``: tag ``t`` may follow tag ``p``; row ``num_labels`` is the start of the sentence.
    ``can_end[t]``: a sentence may end on ``t``. An entity continues only with its own type's
    inside/end tag; in BIOES and BMES it must be closed by an end tag; in BIEO a ``B`` alone is a
    one-character entity but an ``I`` must be followed by ``I`` or ``E``.
    """
    scheme = scheme.upper()
    if scheme not in _PREFIXES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose one of {', '.join(_PREFIXES)}")
    b, i, e, s = _PREFIXES[scheme]
    labels = [id2label[k] for k in range(len(id2label))]
    parts = [split_tag(label) for label in labels]
    if any(p != "O" and p not in (b, i, e, s) for p, _ in parts):
        raise ValueError(f"labels {labels} are not all {scheme} tags")

    def open_after(prefix: str) -> bool:
        """Does an entity stay open (needing a continuation) after a tag with this prefix?"""
        if scheme in ("BIOES", "BMES"):
            return prefix in (b, i)
        if scheme == "BIEO":
            return prefix == i
        return False  # BIO, BIOS: an entity may end anywhere

    def may_continue(prev: tuple[str, str | None], cur: tuple[str, str | None]) -> bool:
        (pp, pt), (cp, ct) = prev, cur
        if pt is None or pt != ct or pp not in (b, i):
            return False
        if scheme in ("BIO", "BIOS"):
            return cp == i
        return cp in (i, e)

    num = len(labels)
    allowed = torch.zeros(num + 1, num, dtype=torch.bool)
    for t, cur in enumerate(parts):
        starts = cur[0] == "O" or cur[0] in (b, s)
        allowed[num, t] = starts
        for p, prev in enumerate(parts):
            if may_continue(prev, cur):
                allowed[p, t] = True
            elif starts:
                allowed[p, t] = not open_after(prev[0])
    can_end = torch.tensor([not open_after(p) for p, _ in parts], dtype=torch.bool)
    return allowed, can_end


__all__ = ["transition_masks"]
