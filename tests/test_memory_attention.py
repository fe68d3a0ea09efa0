"""The vectorised memory attention (eqs. 3-7) against a naive per-sentence, per-memory loop."""

import torch

from modeling.modeling_memory_ner import MemoryAttention


def naive(query, memory, memory_tag_ids, table):
    label_emb = table[memory_tag_ids.clamp(min=0)]  # LabelEmb(labels of a_j), looked up
    memory_mask = memory_tag_ids != -100
    out = torch.zeros(query.shape[0], query.shape[1], table.shape[-1])
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
    B, n, Ls, La, d, l, C = 3, 4, 7, 9, 16, 5, 6
    query, memory, table = torch.randn(B, Ls, d), torch.randn(B, n, La, d), torch.randn(C, l)
    lengths = torch.randint(2, La + 1, (B, n))  # [CLS] + at least one character
    mask = (torch.arange(La)[None, None, :] < lengths[..., None]).long()
    mask[:, :, 0] = 0  # [CLS]
    mask[0, 1] = 0  # a memory without characters
    labels = torch.randint(0, C, (B, n, La)).masked_fill(~mask.bool(), -100)
    fused, weights = MemoryAttention()(query, memory, labels, table)
    assert torch.allclose(fused, naive(query, memory, labels, table), atol=1e-5)
    assert (weights[~mask.bool()[:, :, None, :].expand_as(weights)] == 0).all()
    rows = weights.sum(-1)
    assert torch.allclose(rows[0, 1], torch.zeros(Ls)) and torch.allclose(rows[1], torch.ones(n, Ls), atol=1e-5)


def test_gradients_match_the_naive_loop():
    """The per-label form of eq. 6 gives the label table and the encodings the same gradients as the lookup."""
    torch.manual_seed(1)
    B, n, Ls, La, d, l, C = 2, 3, 5, 6, 8, 4, 7
    labels = torch.randint(0, C, (B, n, La))
    labels[:, :, 0] = -100
    grads = []
    for fn in (lambda *a: MemoryAttention()(*a)[0], naive):
        torch.manual_seed(2)
        query, memory, table = (
            torch.randn(B, Ls, d, requires_grad=True),
            torch.randn(B, n, La, d, requires_grad=True),
            torch.randn(C, l, requires_grad=True),
        )
        fn(query, memory, labels, table).square().sum().backward()
        grads.append([query.grad, memory.grad, table.grad])
    for vectorised, loop in zip(*grads):
        assert torch.allclose(vectorised, loop, atol=1e-5)
