"""The CRF layer and Viterbi decoding: the one place tag sequences are scored and decoded.

The parameters and the loss are ``torchcrf.CRF``'s (pytorch-crf); Viterbi and the marginals are
computed here over the whole batch at once, which the pipeline needs to be fast. It takes care
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

    def _crf_inputs(self, emissions: torch.Tensor, attention_mask: torch.Tensor):
        """Drop the ``[CLS]`` step and build a left-aligned mask with the first step always on."""
        char_mask = character_mask(attention_mask)[:, 1:]
        mask = char_mask.clone()
        mask[:, 0] = True  # an empty input scores one dummy step (its [SEP]), never reported
        return emissions[:, 1:].float(), mask, char_mask

    def forward(self, emissions: torch.Tensor, attention_mask: torch.Tensor, labels: torch.LongTensor) -> torch.Tensor:
        """Sentence-level negative log-likelihood of ``labels`` (memory paper eqs. 11-12), averaged over the batch."""
        with torch.autocast(device_type=emissions.device.type, enabled=False):
            em, mask, char_mask = self._crf_inputs(emissions, attention_mask)
            tags = labels[:, 1:]
            if bool(((tags == -100) & char_mask).any()):
                raise ValueError("labels are -100 at character positions: the CRF needs a tag for every character")
            tags = tags.masked_fill(~char_mask, 0)
            if bool((tags >= self.num_tags).any()) or bool((tags < 0).any()):
                raise ValueError(f"labels must be tag ids in [0, {self.num_tags}), got {int(tags.min())}..{int(tags.max())}")
            return -self.crf(em, tags, mask=mask, reduction="mean")

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.LongTensor:
        """Most probable tag sequence under eq. 11 (Viterbi) as ``[batch, length]`` tag ids aligned with the input, ``-100`` off characters.

        The recursion and the back-trace run over the whole batch at once (pytorch-crf's ``decode``
        traces back one sequence at a time in Python); the additions are in pytorch-crf's order, so
        the paths, ties included, are the ones it returns."""
        em, mask, char_mask = self._crf_inputs(emissions, attention_mask)
        crf = self.crf
        score = crf.start_transitions + em[:, 0]  # [batch, tags]
        history = []
        for t in range(1, em.shape[1]):
            best, index = (score.unsqueeze(2) + crf.transitions + em[:, t].unsqueeze(1)).max(dim=1)
            score = torch.where(mask[:, t : t + 1], best, score)
            history.append(index)
        score = score + crf.end_transitions
        current = score.argmax(dim=1)  # each sequence's last tag
        path = torch.zeros(em.shape[:2], dtype=torch.long, device=em.device)
        for t in range(em.shape[1] - 1, -1, -1):
            path[:, t] = current  # beyond a sequence's end this is its last tag, overwritten by nothing it reads
            if t > 0:
                previous = history[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
                current = torch.where(mask[:, t], previous, current)
        out = torch.full(emissions.shape[:2], -100, dtype=torch.long, device=emissions.device)
        out[:, 1:] = path.masked_fill(~char_mask, -100)
        return out

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """p(y_i = k | x) under eq. 11 for every character i and tag k, ``[batch, length, num_tags]``
        aligned with the input (zeros off characters).

        Forward-backward in probability space, each step rescaled to sum to one (the scales cancel
        in the marginals): a ``[tags, tags]`` matrix product per step instead of pytorch-crf's
        log-sum-exp over ``[batch, tags, tags]`` and a backward pass through it. Should a step
        underflow (transitions or emissions ~80 apart), the log-space result is returned instead."""
        with torch.autocast(device_type=emissions.device.type, enabled=False):
            em, mask, char_mask = self._crf_inputs(emissions.detach(), attention_mask)
            crf = self.crf
            step = (em - em.max(dim=2, keepdim=True).values).exp()  # [batch, steps, tags], max 1 per step
            trans = (crf.transitions - crf.transitions.max()).exp()
            start = (crf.start_transitions - crf.start_transitions.max()).exp()
            end = (crf.end_transitions - crf.end_transitions.max()).exp()
            steps = em.shape[1]
            alpha = [start * step[:, 0]]
            alpha[0] = alpha[0] / alpha[0].sum(-1, keepdim=True)
            for t in range(1, steps):
                a = (alpha[-1] @ trans) * step[:, t]
                a = a / a.sum(-1, keepdim=True)
                alpha.append(torch.where(mask[:, t : t + 1], a, alpha[-1]))
            beta = [end.expand_as(alpha[0]) / end.sum()]
            for t in range(steps - 2, -1, -1):  # beta[t] from step t + 1; past a sequence's end it stays exp(end)
                b = (beta[-1] * step[:, t + 1]) @ trans.T
                b = b / b.sum(-1, keepdim=True)
                beta.append(torch.where(mask[:, t + 1 : t + 2], b, beta[-1]))
            marg = torch.stack(alpha, 1) * torch.stack(beta[::-1], 1)
            marg = marg / marg.sum(-1, keepdim=True)
        if not bool(torch.isfinite(marg[char_mask]).all()):
            return self.log_space_marginals(emissions, attention_mask)
        out = torch.zeros(emissions.shape, dtype=torch.float32, device=emissions.device)
        out[:, 1:] = marg * char_mask.unsqueeze(-1)
        return out

    @torch.no_grad()
    def log_space_marginals(self, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The same marginals as the gradient of the log partition function (pytorch-crf's forward
        algorithm) with respect to the emissions: slower, never underflows."""
        with torch.enable_grad(), torch.autocast(device_type=emissions.device.type, enabled=False):
            em, mask, char_mask = self._crf_inputs(emissions.detach(), attention_mask)
            em = em.clone().requires_grad_(True)
            log_z = self.crf._compute_normalizer(em.transpose(0, 1), mask.transpose(0, 1))
            (grad,) = torch.autograd.grad(log_z.sum(), em)
        out = torch.zeros(emissions.shape, dtype=torch.float32, device=emissions.device)
        out[:, 1:] = grad * char_mask.unsqueeze(-1)
        return out
