"""The CRF layer and Viterbi decoding: the one place tag sequences are scored and decoded.

The parameters and the loss are ``torchcrf.CRF``'s (pytorch-crf); Viterbi and the marginals, for
inference only, are computed here over the whole batch at once, which the pipeline needs to be fast. It takes care
of pytorch-crf's pitfalls:

* inputs carry ``[CLS]`` first and ``[SEP]`` last; the CRF runs on the characters between them,
  so its mask always starts with an unmasked step (pytorch-crf requires that);
* an input with no character still gets one (ignored) step, so the batch never breaks;
* labels of ``-100`` (padding) are never looked up as tag indices;
* scores are computed in float32 even under fp16/bf16 autocast.

Besides the loss and Viterbi, :meth:`CRFHead.marginals` gives each character's tag probabilities
under the CRF (forward-backward), the confidence the pipeline reports for CRF taggers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchcrf import CRF


def character_mask(attention_mask: torch.Tensor) -> torch.BoolTensor:
    """Positions of characters: attended positions minus the first (``[CLS]``) and last (``[SEP]``)."""
    mask = attention_mask.bool().clone()
    lengths = mask.sum(dim=1)
    mask[:, 0] = False
    rows = torch.arange(mask.shape[0], device=mask.device)
    mask[rows, (lengths - 1).clamp(min=0)] = False
    return mask


class CRFHead(nn.Module):
    """Linear-chain CRF over per-character emission scores."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.crf = CRF(num_tags, batch_first=True)

    def crf_inputs(self, emissions: torch.Tensor, attention_mask: torch.Tensor):
        """Drop the ``[CLS]`` step and build a left-aligned mask with the first step always on."""
        char_mask = character_mask(attention_mask)[:, 1:]
        mask = char_mask.clone()
        mask[:, 0] = True  # an empty input scores one dummy step (its [SEP]), never reported
        return emissions[:, 1:].float(), mask, char_mask

    def forward(self, emissions: torch.Tensor, attention_mask: torch.Tensor, labels: torch.LongTensor) -> torch.Tensor:
        """Sentence-level negative log-likelihood of ``labels`` (memory paper eqs. 11-12), averaged over the batch."""
        with torch.autocast(device_type=emissions.device.type, enabled=False):
            em, mask, char_mask = self.crf_inputs(emissions, attention_mask)
            tags = labels[:, 1:]
            if bool(((tags == -100) & char_mask).any()):
                raise ValueError("labels are -100 at character positions: the CRF needs a tag for every character")
            tags = tags.masked_fill(~char_mask, 0)
            if bool((tags >= self.num_tags).any()) or bool((tags < 0).any()):
                raise ValueError(
                    f"labels must be tag ids in [0, {self.num_tags}), got {int(tags.min())}..{int(tags.max())}"
                )
            return -self.crf(em, tags, mask=mask, reduction="mean")

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.LongTensor:
        """Most probable tag sequence under eq. 11 (Viterbi) as ``[batch, length]`` tag ids aligned with the input,
        ``-100`` off characters.

        The recursion and the back-trace run over the whole batch at once, in NumPy: inference only,
        and a step costs microseconds there against tens of microseconds of torch dispatch, which a
        single sentence (the pipeline at batch 1) would pay ~60 times. The additions are in
        pytorch-crf's order and ties go to the first tag, so the paths are the ones its ``decode``
        returns."""
        em, mask, char_mask = (x.cpu().numpy() for x in self.crf_inputs(emissions, attention_mask))
        start, trans, end = (
            p.detach().float().cpu().numpy()
            for p in (self.crf.start_transitions, self.crf.transitions, self.crf.end_transitions)
        )
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
        out = torch.full(emissions.shape[:2], -100, dtype=torch.long)
        out[:, 1:] = torch.from_numpy(np.where(char_mask, path, -100))
        return out.to(emissions.device)

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """p(y_i = k | x) under eq. 11 for every character i and tag k, ``[batch, length, num_tags]``
        aligned with the input (zeros off characters).

        Forward-backward in probability space, each step rescaled to sum to one (the scales cancel
        in the marginals), in NumPy as ``decode``: a ``[tags, tags]`` matrix product per step instead
        of pytorch-crf's log-sum-exp over ``[batch, tags, tags]`` and a backward pass through it.
        Should a step underflow (transitions or emissions ~80 apart), the log-space result is
        returned instead."""
        em, mask, char_mask = (x.cpu().numpy() for x in self.crf_inputs(emissions.detach(), attention_mask))
        start, trans, end = (
            p.detach().float().cpu().numpy()
            for p in (self.crf.start_transitions, self.crf.transitions, self.crf.end_transitions)
        )
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
            return self.log_space_marginals(emissions, attention_mask)
        out = torch.zeros(emissions.shape, dtype=torch.float32)
        out[:, 1:] = torch.from_numpy(marg * char_mask[..., None])
        return out.to(emissions.device)

    @torch.no_grad()
    def log_space_marginals(self, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The same marginals as the gradient of the log partition function (pytorch-crf's forward
        algorithm) with respect to the emissions: slower, never underflows."""
        with torch.enable_grad(), torch.autocast(device_type=emissions.device.type, enabled=False):
            em, mask, char_mask = self.crf_inputs(emissions.detach(), attention_mask)
            em = em.clone().requires_grad_(True)
            log_z = self.crf._compute_normalizer(em.transpose(0, 1), mask.transpose(0, 1))
            (grad,) = torch.autograd.grad(log_z.sum(), em)
        out = torch.zeros(emissions.shape, dtype=torch.float32, device=emissions.device)
        out[:, 1:] = grad * char_mask.unsqueeze(-1)
        return out
