"""The CRF layer and Viterbi decoding: the one place tag sequences are scored and decoded.

The parameters and the loss are ``torchcrf.CRF``'s (pytorch-crf); Viterbi and the marginals, for
inference only, are computed over the whole batch at once in NumPy (:mod:`.crf_numpy`, which ONNX Runtime serving
shares), which the pipeline needs to be fast. It takes care
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

from .crf_numpy import marginals, viterbi


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

    def scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The CRF's start, transition ``[previous, next]`` and end scores as float32 arrays."""
        return tuple(
            p.detach().float().cpu().numpy()
            for p in (self.crf.start_transitions, self.crf.transitions, self.crf.end_transitions)
        )

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.LongTensor:
        """Most probable tag sequence under eq. 11 (Viterbi, ``crf_numpy.viterbi``) as ``[batch, length]`` tag ids
        aligned with the input, ``-100`` off characters."""
        start, trans, end = self.scores()
        arrays = (x.cpu().numpy() for x in self.crf_inputs(emissions, attention_mask))
        out = torch.full(emissions.shape[:2], -100, dtype=torch.long)
        out[:, 1:] = torch.from_numpy(viterbi(*arrays, start, trans, end))
        return out.to(emissions.device)

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """p(y_i = k | x) under eq. 11 for every character i and tag k, ``[batch, length, num_tags]`` aligned with
        the input (zeros off characters): ``crf_numpy.marginals``, or :meth:`log_space_marginals` where that
        underflows."""
        arrays = (x.cpu().numpy() for x in self.crf_inputs(emissions.detach(), attention_mask))
        marg = marginals(*arrays, *self.scores())
        if marg is None:
            return self.log_space_marginals(emissions, attention_mask)
        out = torch.zeros(emissions.shape, dtype=torch.float32)
        out[:, 1:] = torch.from_numpy(marg)
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
