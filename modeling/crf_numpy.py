"""Viterbi decoding and tag marginals of a linear-chain CRF in NumPy, for inference: the one place they are
computed, by :class:`.crf.CRFHead` (torch) and by ONNX Runtime serving (no torch).

Inputs are those of :func:`crf_arrays` (``CRFHead.crf_inputs`` in torch): ``em`` ``[batch, steps, tags]`` (the
emissions after ``[CLS]``), ``mask`` (left-aligned, the first step always on) and ``char_mask`` (the steps that
are characters); and the CRF's ``start``, ``transitions`` ``[previous, next]`` and ``end`` scores
(``CRFHead.scores``).
"""

from __future__ import annotations

import numpy as np


def crf_arrays(emissions: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``CRFHead.crf_inputs`` for arrays: ``[CLS] chars [SEP]`` emissions and attention mask -> ``em`` (the
    ``[CLS]`` step dropped), ``mask`` (its first step always on: an input with no character scores one dummy
    step) and ``char_mask``."""
    attended = attention_mask.astype(bool)
    char_mask = attended.copy()
    char_mask[:, 0] = False
    char_mask[np.arange(len(char_mask)), np.maximum(attended.sum(axis=1) - 1, 0)] = False
    char_mask = char_mask[:, 1:]
    mask = char_mask.copy()
    mask[:, 0] = True
    return emissions[:, 1:].astype(np.float32), mask, char_mask


def viterbi(em, mask, char_mask, start, trans, end) -> np.ndarray:
    """The most probable tag of each step, ``[batch, steps]``, ``-100`` off characters.

    The recursion and the back-trace run over the whole batch at once: a step costs microseconds here against
    tens of microseconds of torch dispatch, which a single sentence (the pipeline at batch 1) would pay ~60 times.
    The additions are in pytorch-crf's order and ties go to the first tag, so the paths are the ones its
    ``decode`` returns."""
    batch, steps, _ = em.shape
    last = mask.sum(axis=1) - 1  # each sequence's last step (the mask is left-aligned)
    steps = int(last.max()) + 1  # the [SEP] step after the longest sequence is never read
    # the steps where a shorter sequence ends: its score is the one there (padding runs on, unread)
    ends_at = {int(t): last == t for t in np.unique(last) if t < steps - 1}
    # [tag, previous tag] so that the maximum runs over the contiguous axis; the sums are pytorch-crf's
    # (score + transition) + emission, so the paths and their ties are its own
    trans_t = np.ascontiguousarray(trans.T)
    rows, tags = np.arange(batch)[:, None], np.arange(trans.shape[0])
    score = start + em[:, 0]  # [batch, tags]
    history = np.zeros((max(steps - 1, 0),) + score.shape, dtype=np.int64)
    final = score.copy()
    for t in range(1, steps):
        if t - 1 in ends_at:
            final[ends_at[t - 1]] = score[ends_at[t - 1]]
        candidates = score[:, None, :] + trans_t + em[:, t, :, None]  # [batch, tag, previous tag]
        history[t - 1] = best = candidates.argmax(axis=2)
        score = candidates[rows, tags, best]
    longest = last == steps - 1
    final[longest] = score[longest]
    rows = np.arange(batch)
    current = (final + end).argmax(axis=1)  # each sequence's last tag
    path = np.zeros((batch, em.shape[1]), dtype=np.int64)
    for t in range(steps - 1, -1, -1):
        path[:, t] = current  # past a sequence's end this is its last tag, which nothing reads
        if t > 0:
            back = history[t - 1][rows, current]
            current = np.where(t <= last, back, current) if ends_at else back
    return np.where(char_mask, path, -100)


def marginals(em, mask, char_mask, start, trans, end) -> np.ndarray | None:
    """p(y_i = k | x) of every step and tag, ``[batch, steps, tags]`` (zeros off characters), or None should a
    step underflow (transitions or emissions ~80 apart; the caller then computes them in log space).

    Forward-backward in probability space, each step rescaled to sum to one (the scales cancel in the
    marginals): a ``[tags, tags]`` matrix product per step instead of a log-sum-exp over
    ``[batch, tags, tags]``."""
    step = np.exp(em - em.max(axis=2, keepdims=True))  # [batch, steps, tags], max 1 per step
    trans, start, end = np.exp(trans - trans.max()), np.exp(start - start.max()), np.exp(end - end.max())
    batch, steps, _ = step.shape
    # beta runs over each sequence reversed within its own length, so that, as for alpha, the padding
    # comes after a sequence's steps and no step needs a mask; padded steps compute unread values
    last = mask.sum(axis=1) - 1
    positions = np.arange(steps)
    reverse = np.where(positions <= last[:, None], last[:, None] - positions, positions)  # an involution
    rows = np.arange(batch)[:, None]
    step_reversed = step[rows, reverse]
    trans_t = np.ascontiguousarray(trans.T)
    alpha = np.empty_like(step)
    beta = np.empty_like(step)  # beta[:, t]: at reversed step t
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a = start * step[:, 0]
        alpha[:, 0] = a / a.sum(-1, keepdims=True)
        beta[:, 0] = end / end.sum()
        for t in range(1, steps):
            a = (alpha[:, t - 1] @ trans) * step[:, t]
            alpha[:, t] = a / a.sum(-1, keepdims=True)
            b = (beta[:, t - 1] * step_reversed[:, t - 1]) @ trans_t
            beta[:, t] = b / b.sum(-1, keepdims=True)
        marg = alpha * beta[rows, reverse]
        marg = marg / marg.sum(-1, keepdims=True)
    if not np.isfinite(marg[char_mask]).all():
        return None
    return marg * char_mask[..., None]
