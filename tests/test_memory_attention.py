"""The vectorised memory attention (eqs. 3-7) against a naive per-sentence, per-memory loop."""

import torch

from modeling.modeling_memory_ner import MemoryAttention


def naive(query, memory, memory_mask, label_emb):
    out = torch.zeros(query.shape[0], query.shape[1], label_emb.shape[-1])
    for b in range(query.shape[0]):
        fused = []
        for j in range(memory.shape[1]):
            keep = memory_mask[b, j].bool()
            if not keep.any():
                fused.append(torch.zeros(query.shape[1], label_emb.shape[-1]))
                continue
            a = memory[b, j][keep]  # the memory's characters only
            m = torch.softmax(query[b] @ a.T, dim=-1)  # eqs. 3-5
            fused.append(m @ label_emb[b, j][keep])  # eq. 6
        out[b] = torch.stack(fused).mean(0)  # eq. 7
    return out


def test_vectorised_equals_naive_and_padding_gets_no_attention():
    torch.manual_seed(0)
    B, n, Ls, La, d, l = 3, 4, 7, 9, 16, 5
    query, memory, label_emb = torch.randn(B, Ls, d), torch.randn(B, n, La, d), torch.randn(B, n, La, l)
    lengths = torch.randint(2, La + 1, (B, n))  # [CLS] + at least one character
    mask = (torch.arange(La)[None, None, :] < lengths[..., None]).long()
    mask[:, :, 0] = 0  # [CLS]
    mask[0, 1] = 0  # a memory without characters
    fused, weights = MemoryAttention()(query, memory, mask, label_emb)
    assert torch.allclose(fused, naive(query, memory, mask, label_emb), atol=1e-5)
    assert (weights[~mask.bool()[:, :, None, :].expand_as(weights)] == 0).all()
    rows = weights.sum(-1)
    assert torch.allclose(rows[0, 1], torch.zeros(Ls)) and torch.allclose(rows[1], torch.ones(n, Ls), atol=1e-5)
