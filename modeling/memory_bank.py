"""The memory bank: the labelled training sentences memories are drawn from, kept as model state.

Stored as buffers (token ids, tag ids, entity-type sets, POS strings and the sentences as written, as code
points), so
``save_pretrained`` writes it into ``model.safetensors`` and a fresh process needs nothing but the
model folder. Its shape lives in the config (``memory_bank_size``, ``memory_bank_length``,
``memory_pos_length``) so ``from_pretrained`` can build the buffers before loading them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


class MemoryBank(nn.Module):
    def __init__(self, size: int, length: int, pos_length: int, num_types: int, token_table_size: int = 0):
        super().__init__()
        # token id -> the character it stands for (code point; 0 for [UNK] and specials): lets the model
        # rebuild a query's text from input_ids alone, to POS-tag it for retrieval
        self.register_buffer("token_chars", torch.zeros(token_table_size, dtype=torch.int32))
        # int32, not int64: half the size (a 500,000-sentence bank of length 64 holds 128 MB of ids); not smaller, as
        # DDP (gloo) broadcasts the buffers and takes no int16;
        # gather() hands out int64, as the model's inputs are
        self.register_buffer("input_ids", torch.zeros(size, length, dtype=torch.int32))
        self.register_buffer("labels", torch.full((size, length), -100, dtype=torch.int32))
        self.register_buffer("lengths", torch.zeros(size, dtype=torch.int32))
        self.register_buffer("types", torch.zeros(size, num_types, dtype=torch.uint8))
        self.register_buffer("pos", torch.zeros(size, pos_length, dtype=torch.int32))
        # the characters as written, at their tokens' positions (the ids lower-case and merge blanks): what the
        # model shows of a memory; 0 where a bank saved without them has none
        self.register_buffer("chars", torch.zeros(size, length, dtype=torch.int32))
        self._decoded: dict[str, list[str]] = {}  # texts and POS strings, decoded once (see :meth:`changed`)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @classmethod
    def from_sentences(
        cls,
        input_ids: Sequence[Sequence[int]],
        labels: Sequence[Sequence[int]],
        types: np.ndarray,
        pos: Sequence[str],
        vocab: dict[str, int] | None = None,
        texts: Sequence[str] | None = None,
    ) -> "MemoryBank":
        """A bank just large enough for these sentences (formats as in :meth:`fill`); ``vocab`` fills
        the token table that lets retrieval rebuild a query's text from its ids."""
        bank = cls(
            len(input_ids),
            max(len(x) for x in input_ids),
            max(1, max(len(p) for p in pos)),
            np.asarray(types).reshape(len(input_ids), -1).shape[1],
            len(vocab) if vocab else 0,
        )
        bank.fill(input_ids, labels, types, pos, texts)
        if vocab:
            bank.fill_token_table(vocab)
        return bank

    @torch.no_grad()
    def fill(
        self,
        input_ids: Sequence[Sequence[int]],
        labels: Sequence[Sequence[int]],
        types: np.ndarray,
        pos: Sequence[str],
        texts: Sequence[str] | None = None,
    ) -> None:
        """Copy the bank's sentences in: ``input_ids`` / ``labels`` as produced by ``encode_chars``
        (with ``[CLS]``/``[SEP]``, labels ``-100`` there), ``types`` ``[size, num_types]`` 0/1, ``pos`` strings,
        ``texts`` the sentences as written (one character per token; None: shown as rebuilt from the ids)."""
        if not (len(input_ids) == len(labels) == len(types) == len(pos) == len(self)):
            raise ValueError(
                f"a bank of {len(self)} sentences got {len(input_ids)} ids, {len(labels)} labels, {len(types)} type "
                f"sets, {len(pos)} POS strings"
            )
        self.changed()
        self.input_ids.zero_()
        self.labels.fill_(-100)
        self.pos.zero_()
        self.chars.zero_()
        self._write_rows(0, input_ids, labels, types, pos, texts)

    def _write_rows(self, start: int, input_ids, labels, types, pos, texts=None) -> None:
        for i, (ids, labs, p) in enumerate(zip(input_ids, labels, pos), start):
            if len(ids) > self.input_ids.shape[1] or len(p) > self.pos.shape[1]:
                raise ValueError(f"bank sentence {i} is longer than the bank's buffers")
            if texts is not None:
                text = texts[i - start]
                if len(text) != len(ids) - 2:
                    raise ValueError(f"bank sentence {i}: {len(text)} characters for {len(ids) - 2} tokens")
                self.chars[i, 1 : len(text) + 1] = torch.as_tensor([ord(c) for c in text], dtype=torch.int32)
            self.input_ids[i, : len(ids)] = torch.as_tensor(ids, dtype=self.input_ids.dtype)
            self.labels[i, : len(labs)] = torch.as_tensor(labs, dtype=self.labels.dtype)
            self.lengths[i] = len(ids)
            self.pos[i, : len(p)] = torch.as_tensor([ord(c) for c in p], dtype=torch.int32)
        self.types[start : start + len(input_ids)] = torch.as_tensor(np.asarray(types), dtype=torch.uint8).reshape(
            len(input_ids), -1
        )

    @torch.no_grad()
    def extended(
        self, input_ids, labels, types: np.ndarray, pos: Sequence[str], texts: Sequence[str] | None = None
    ) -> "MemoryBank":
        """A new bank: this one's sentences, then the given ones (same formats as :meth:`fill`)."""
        size, length, pos_length = len(self), self.input_ids.shape[1], self.pos.shape[1]
        bank = MemoryBank(
            size + len(input_ids),
            max([length, *map(len, input_ids)]),
            max([pos_length, *map(len, pos)]),
            self.types.shape[1],
            len(self.token_chars),
        ).to(self.input_ids.device)
        bank.token_chars.copy_(self.token_chars)
        bank.input_ids[:size, :length] = self.input_ids
        bank.chars[:size, :length] = self.chars
        bank.labels[:size, :length] = self.labels
        bank.lengths[:size] = self.lengths
        bank.pos[:size, :pos_length] = self.pos
        bank.types[:size] = self.types
        bank._write_rows(size, input_ids, labels, types, pos, texts)
        return bank

    @torch.no_grad()
    def subset(self, keep: torch.LongTensor) -> "MemoryBank":
        """A new bank of the sentences ``keep`` (bank indices, in that order)."""
        bank = MemoryBank(
            len(keep), self.input_ids.shape[1], self.pos.shape[1], self.types.shape[1], len(self.token_chars)
        ).to(self.input_ids.device)
        bank.token_chars.copy_(self.token_chars)
        for name in ("input_ids", "labels", "lengths", "pos", "types", "chars"):
            getattr(bank, name).copy_(getattr(self, name)[keep])
        return bank

    @torch.no_grad()
    def fill_token_table(self, vocab: dict[str, int]) -> None:
        """Record which character each single-character token id stands for."""
        self.changed()
        self.token_chars.zero_()
        for token, idx in vocab.items():
            if len(token) == 1 and idx < len(self.token_chars):
                self.token_chars[idx] = ord(token)

    def texts(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> list[str]:
        """Rebuild the texts of ``[CLS] chars [SEP]`` inputs (``char_tokenization.texts_of_ids``)."""
        from .char_tokenization import texts_of_ids

        rows = [row[:n] for row, n in zip(input_ids.tolist(), attention_mask.sum(dim=1).tolist())]
        return texts_of_ids(self.token_chars.tolist(), rows)

    def text_of(self, input_ids: Sequence[int]) -> str:
        """The text of one ``[CLS] chars [SEP]`` id list, as :meth:`texts` rebuilds it."""
        ids = torch.as_tensor([input_ids])
        return self.texts(ids, torch.ones_like(ids))[0]

    def changed(self) -> None:
        """The buffers were written (``fill``, ``fill_token_table``, ``load_state_dict``): decode them again when
        next asked."""
        self._decoded = {}

    def _load_from_state_dict(self, *args, **kwargs):
        self.changed()
        return super()._load_from_state_dict(*args, **kwargs)

    def sentence_texts(self) -> list[str]:
        """The bank sentences' texts as the model reads them (rebuilt from their ids, as a query's are: what
        retrieval compares), decoded once; :meth:`written_texts` shows them as written."""
        if "texts" not in self._decoded:
            mask = (torch.arange(self.input_ids.shape[1], device=self.lengths.device) < self.lengths[:, None]).long()
            self._decoded["texts"] = self.texts(self.input_ids, mask)
        return self._decoded["texts"]

    def written_texts(self, indices: Sequence[int] | torch.Tensor) -> list[str]:
        """Bank sentences ``indices`` as they were written (case, blanks); one saved without its characters, as
        rebuilt from its ids (:meth:`sentence_texts`)."""
        out = []
        for i in torch.as_tensor(indices).flatten().tolist():
            n = int(self.lengths[i]) - 2
            row = self.chars[i, 1 : n + 1].tolist()
            out.append("".join(map(chr, row)) if all(row) else self.sentence_texts()[i])
        return out

    def pos_strings(self) -> list[str]:
        """The bank's POS strings, decoded once (until :meth:`changed`); decoding all of them takes longer than
        tagging a sentence, so raw-input retrieval must not repeat it per call."""
        if "pos" not in self._decoded:
            self._decoded["pos"] = ["".join(chr(c) for c in row if c) for row in self.pos.tolist()]
        return self._decoded["pos"]

    def gather(self, memory_ids: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor, torch.LongTensor]:
        """Memories ``[batch, n]`` (bank indices) -> ``memory_input_ids``, ``memory_attention_mask``,
        ``memory_tag_ids``, each ``[batch, n, longest memory]``."""
        memory_ids = memory_ids.to(self.input_ids.device)
        width = int(self.lengths[memory_ids].max()) if memory_ids.numel() else 1
        ids = self.input_ids[memory_ids][..., :width].long()
        mask = (torch.arange(width, device=ids.device) < self.lengths[memory_ids][..., None]).long()
        return ids, mask, self.labels[memory_ids][..., :width].long()


class BankEncodingCache:
    """Encoder features of bank sentences, computed once and reused until the weights or the bank change.

    One dense table ``[rows, bank length, d]`` of at most ``max_sentences`` rows (grown by doubling), a bank
    index -> row map and each row's last use: a batch's memories are one ``index_select``, and a full table
    makes room by dropping the sentences used least recently. The model clears it when its weights may change
    (``train()``, ``load_state_dict``) and remaps it when its bank changes (:meth:`remap`).
    """

    def __init__(self, max_sentences: int):
        if max_sentences < 1:
            raise ValueError(f"the bank-encoding cache needs room for at least one sentence, got {max_sentences}")
        self.max_sentences = max_sentences
        self.encoded = 0  # bank sentences encoded so far (a hit costs nothing)
        self.clear()

    def clear(self) -> None:
        self.table: torch.Tensor | None = None
        self.slots: torch.LongTensor | None = None  # bank index -> table row, -1 if not cached
        self.owner: torch.LongTensor | None = None  # table row -> bank index, -1 if free
        self.last_used: torch.LongTensor | None = None  # table row -> the lookup that last read it
        self.tick = 0

    def __len__(self) -> int:
        return 0 if self.owner is None else int((self.owner >= 0).sum())

    def remap(self, old_index: torch.LongTensor, length: int) -> None:
        """The bank changed: its sentence ``i`` is the old sentence ``old_index[i]`` (``-1``: new), and its
        buffers are ``length`` wide. The rows of the sentences kept stay; those of removed sentences are freed."""
        if self.slots is None:
            return
        if self.table is None or length > self.table.shape[1]:
            self.clear()
            return
        old_index = old_index.to(self.slots.device)
        kept = old_index >= 0
        self.slots = torch.where(kept, self.slots[old_index.clamp(min=0)], torch.full_like(old_index, -1))
        self.owner.fill_(-1)
        cached = self.slots >= 0
        self.owner[self.slots[cached]] = torch.nonzero(cached).flatten()

    @torch.no_grad()
    def lookup(self, bank: MemoryBank, memory_ids: torch.LongTensor, encode, chunk: int = 64) -> torch.Tensor:
        """Features ``[*memory_ids.shape, longest of these memories, d]``; ``encode(ids, attention_mask=mask)`` encodes
        bank sentences not cached, ``chunk`` at a time."""
        device = bank.input_ids.device
        ids = memory_ids.to(device).flatten()
        width = int(bank.lengths[ids].max()) if len(ids) else 1
        wanted = ids.unique()
        if len(wanted) > self.max_sentences:  # more than the cache holds: encoded for this call only
            self.encoded += len(wanted)
            out = torch.cat([self._encode(bank, part, encode) for part in wanted.split(chunk)])
            rows = torch.searchsorted(wanted, ids)
            return out.index_select(0, rows)[:, :width].view(*memory_ids.shape, width, -1)
        if self.slots is None or len(self.slots) != len(bank):
            self.clear()
            self.slots = torch.full((len(bank),), -1, dtype=torch.long, device=device)
        self.tick += 1
        missing = wanted[self.slots[wanted] < 0]
        for part in missing.split(chunk) if len(missing) else ():  # split() of nothing is one empty part
            encoded = self._encode(bank, part, encode)
            rows = self._free_rows(len(part), bank.input_ids.shape[1], encoded, keep=wanted)
            self.table[rows] = 0
            self.table[rows, : encoded.shape[1]] = encoded
            self.slots[part], self.owner[rows] = rows, part
            self.encoded += len(part)
        self.last_used[self.slots[wanted]] = self.tick
        return self.table.index_select(0, self.slots[ids])[:, :width].view(*memory_ids.shape, width, -1)

    @staticmethod
    def _encode(bank: MemoryBank, part: torch.LongTensor, encode) -> torch.Tensor:
        input_ids, mask, _ = bank.gather(part[:, None])
        encoded = encode(input_ids[:, 0], attention_mask=mask[:, 0])
        return nn.functional.pad(encoded, (0, 0, 0, bank.input_ids.shape[1] - encoded.shape[1]))

    def _free_rows(self, count: int, length: int, like: torch.Tensor, keep: torch.LongTensor) -> torch.LongTensor:
        """``count`` table rows to write: free ones, new ones up to ``max_sentences``, then the least recently used
        of the sentences not in ``keep`` (this lookup's own)."""
        capacity = 0 if self.table is None else len(self.table)
        free = torch.nonzero(self.owner < 0).flatten() if capacity else torch.empty(0, dtype=torch.long)
        if len(free) < count and capacity < self.max_sentences:
            grown = min(self.max_sentences, max(2 * capacity, capacity + count - len(free), 256))
            # empty, not zeros: the rows not used yet cost no time (and no resident memory) until written
            table = like.new_empty(grown, length, like.shape[-1])
            if capacity:
                table[:capacity] = self.table
            owner = torch.full((grown,), -1, dtype=torch.long, device=table.device)
            last_used = torch.zeros(grown, dtype=torch.long, device=table.device)
            if capacity:
                owner[:capacity], last_used[:capacity] = self.owner, self.last_used
            self.table, self.owner, self.last_used = table, owner, last_used
            free = torch.nonzero(self.owner < 0).flatten()
        if len(free) < count:
            in_use = self.owner >= 0
            in_use[self.slots[keep][self.slots[keep] >= 0]] = False  # never evict what this lookup reads
            candidates = torch.nonzero(in_use).flatten()
            evict = candidates[self.last_used[candidates].argsort()[: count - len(free)]]
            self.slots[self.owner[evict]] = -1
            self.owner[evict] = -1
            free = torch.cat([free, evict])
        return free[:count]
