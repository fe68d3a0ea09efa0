"""Batching for the memory model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DataCollatorForTokenClassification

from modeling.memory_bank import MemoryBank


@dataclass
class DataCollatorForMemoryNER(DataCollatorForTokenClassification):
    """Pads like ``DataCollatorForTokenClassification`` and adds each example's memories.

    Every feature carries ``memory_ids`` (its ``n`` bank indices, from ``retrieval.rank_memories``);
    the batch gets ``memory_ids`` ``[batch, n]`` and, from ``bank``, ``memory_input_ids``,
    ``memory_attention_mask`` and ``memory_tag_ids`` ``[batch, n, longest memory]``.
    """

    bank: MemoryBank | None = None

    def __call__(self, features, return_tensors=None):
        memory_ids = [f.pop("memory_ids") for f in features] if "memory_ids" in features[0] else None
        batch = super().__call__(features, return_tensors)
        if memory_ids is not None:
            ids = torch.as_tensor(memory_ids, dtype=torch.long)
            batch["memory_ids"] = ids
            if self.bank is not None:
                mem_ids, mem_mask, mem_labels = self.bank.gather(ids)
                batch["memory_input_ids"], batch["memory_attention_mask"], batch["memory_tag_ids"] = (
                    mem_ids.cpu(),
                    mem_mask.cpu(),
                    mem_labels.cpu(),
                )
        return batch
