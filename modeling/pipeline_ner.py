"""``chinese-ner``: raw text in, entity spans with offsets into the caller's string out.

A token-classification pipeline for every tagger of this project (``MemoryNetForTokenClassification``,
``Seq2SeqAttnTagger``), registered with ``PIPELINE_REGISTRY``. ``train.py`` saves it with the model
(``custom_pipelines`` in ``config.json`` and this file in the folder), so anywhere::

    from transformers import pipeline
    ner = pipeline("chinese-ner", model="path/or/hub-id", trust_remote_code=True)
    ner("张伟在北京大学读书。")
    # [{'entity_group': ..., 'score': ..., 'word': ..., 'start': ..., 'end': ...}, ...]

One token per character (:mod:`.char_tokenization`), so a tag's position is a character offset in
the input. Text longer than the model's window is read by :func:`.text_splitting.plan_windows`
(its sentences, then stride windows over a sentence that is still too long); an entity is kept
from the window that owns its middle character, so none is lost or doubled at a cut
(`entity_spans.without_overlaps` settles the rare pair that still overlaps). An entity never begins or
ends with a blank character (`entity_spans.trim_blank`). Windows of one or many texts are batched
together (``batch_size``, 32 unless given).

``score`` is the mean, over the entity's characters, of the model's probability of the chosen tag
(``tag_probabilities``): the CRF's marginal p(y_i | x) for the memory network, the decoder's softmax
(given its own previous tags) for the seq2seq tagger. A confidence for display and thresholds; it
has not been calibrated.

With ``return_memories=True`` (memory network only) each result is a dict with the entities and,
for each window, the memory sentences retrieved from the model's bank, their entities, and the
memory attention ``M_j`` (eqs. 4-5 of the memory paper) between the window's and the memory's
characters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForTokenClassification
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline, pad_collate_fn
from transformers.pipelines.pt_utils import PipelineIterator

from .char_tokenization import encode_chars
from .entity_dictionary import ENTITY_MEMORY_FORMS, DictionaryMatcher, force_matches
from .entity_spans import window_entities
from .tag_schemes import tags_to_spans
from .text_splitting import plan_windows

TASK = "chinese-ner"


class ChineseNERPipeline(ChunkPipeline):
    """Entity spans for a string or a list of strings (see the module docstring).

    Call arguments: ``stride`` (characters between stride windows, default half the window),
    ``num_beams`` (seq2seq tagger), ``return_memories`` (memory network), ``force_entities`` (the entities taught
    by name override the model wherever their strings occur, longest match first), ``batch_size``.
    """

    DEFAULT_BATCH_SIZE = 32  # windows per forward pass when the caller gives no batch_size
    SORT_BLOCK_BATCHES = 64  # a list's windows are ordered by length this many batches at a time

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._batch_size is None:
            # one window at a time (transformers' default) would tag a long text's windows one by one
            self._batch_size = self.DEFAULT_BATCH_SIZE
        self._matcher = DictionaryMatcher()

    @classmethod
    def custom_pipelines_entry(cls) -> dict:
        """What ``config.custom_pipelines`` declares for this pipeline (as ``Pipeline.save_pretrained`` writes it)."""
        return {
            TASK: {
                "impl": f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}",
                "pt": ["AutoModelForTokenClassification"],
                "type": "text",
            }
        }

    def add_memories(
        self, texts: list[str], tags: list[list[str]] | None = None, entities: list[list[dict]] | None = None
    ) -> list[int]:
        """Memory network: append labelled sentences to the model's memory bank (see
        ``MemoryNetForTokenClassification.add_memories``); ``entities`` as this pipeline returns them."""
        if not hasattr(self.model, "add_memories"):
            raise ValueError(f"add_memories needs a memory-network model; this one is {type(self.model).__name__}")
        return self.model.add_memories(texts, tags=tags, tokenizer=self.tokenizer, entities=entities)

    def remove_memories(self, indices: list[int]) -> None:
        """Memory network: remove bank sentences by bank index."""
        if not hasattr(self.model, "remove_memories"):
            raise ValueError(f"remove_memories needs a memory-network model; this one is {type(self.model).__name__}")
        self.model.remove_memories(indices)

    def add_entities(self, entries, memory_form: str = ENTITY_MEMORY_FORMS[0]) -> dict[str, str]:
        """Teach the model entities by name (a mapping string -> type, pairs, or a ``string<TAB>type`` file; see
        ``entity_dictionary``); returns the new entries. The memory network reads them in context; any model
        forces them with ``force_entities=True``."""
        return self.model.add_entities(entries, tokenizer=self.tokenizer, memory_form=memory_form)

    def remove_entities(self, strings) -> None:
        """Forget entities taught by name."""
        self.model.remove_entities(strings)

    @property
    def added_entities(self) -> dict[str, str]:
        """The entities taught by name: string -> type."""
        return self.model.added_entities

    def _sanitize_parameters(
        self,
        stride: int | None = None,
        num_beams: int | None = None,
        return_memories: bool | None = None,
        force_entities: bool | None = None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(
                f"{TASK} got unexpected arguments {sorted(kwargs)} (it takes stride, num_beams, return_memories, "
                "force_entities, batch_size)"
            )
        preprocess, forward, postprocess = {}, {}, {}
        if force_entities:
            postprocess["force_entities"] = True
        if stride is not None:
            preprocess["stride"] = stride
        if num_beams is not None:
            if not hasattr(self.model, "generate_tags"):
                raise ValueError(
                    f"num_beams applies to the seq2seq tagger; this model is {type(self.model).__name__} (CRF "
                    "decoding)"
                )
            forward["num_beams"] = num_beams
        if return_memories:
            if getattr(self.model.config, "num_memory", 0) <= 0:
                raise ValueError("return_memories=True needs a memory-network model with num_memory > 0")
            forward["return_memories"] = postprocess["return_memories"] = True
        return preprocess, forward, postprocess

    def __call__(self, inputs: str | list[str], **kwargs) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Entities of ``inputs`` (a string -> a list of entities; a list of strings -> one list per string)."""
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"{TASK} takes a string or a list of strings, got {type(inputs).__name__}")
        if not texts:  # no texts, no answers (the base class would index the empty list)
            return []
        return super().__call__(inputs if isinstance(inputs, str) else list(texts), **kwargs)

    def get_iterator(
        self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params, postprocess_params
    ):
        """A list of texts is tagged by :meth:`_by_window_length`, except with ``batch_size=1`` (nothing to pad) or
        DataLoader workers, which go through ``ChunkPipeline``'s iterator text by text."""
        if not isinstance(inputs, list) or batch_size == 1 or num_workers:
            return super().get_iterator(
                inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params
            )
        return self._by_window_length(inputs, batch_size, preprocess_params, forward_params, postprocess_params)

    def _by_window_length(
        self, texts: list[str], batch_size: int, preprocess_params, forward_params, postprocess_params
    ):
        """The answers for ``texts``, in order, with their windows batched shortest first across texts.

        A batch is padded to its longest window, and everything after the BiLSTM (memory attention,
        self-attention, the CRF's steps) pays for the padding. In text order a long line's sentences
        are batched with other lines' sentences of any length: on People's Daily the batches held twice
        the characters they tag. So the windows of up to ``SORT_BLOCK_BATCHES`` batches are sorted by
        length, tagged, and given back to their texts.
        """
        collate = pad_collate_fn(self.tokenizer, None)
        start = 0
        while start < len(texts):
            windows: list[dict] = []
            end = start
            while end < len(texts) and len(windows) < self.SORT_BLOCK_BATCHES * batch_size:
                windows += [{**w, "index": end - start} for w in self.preprocess(texts[end], **preprocess_params)]
                end += 1
            windows.sort(key=lambda w: w["input_ids"].shape[1])
            loader = DataLoader(windows, batch_size=batch_size, collate_fn=collate)
            per_text: list[list[dict]] = [[] for _ in range(end - start)]
            for out in PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size):
                per_text[out["index"]].append(out)
            for outputs in per_text:
                yield self.postprocess(outputs, **postprocess_params)
            start = end

    # -- one text -> model inputs, one per window -------------------------------------------------
    def preprocess(self, text: str, stride: int | None = None):
        window = self.model.config.max_length - 2  # [CLS] and [SEP]
        plan = plan_windows(text, window, stride) if text else []
        if not plan:  # an empty text still yields one (empty) chunk so it gets its (empty) answer
            plan = [(0, 0, 0, 0)]
        # all of the text's windows in one tokenizer call
        enc = encode_chars(
            self.tokenizer, [list(text[start:end]) for start, end, _, _ in plan], self.model.config.max_length
        )
        # shortest window first: a long text's batches carry little padding (a list's windows are sorted again
        # across its texts, see _by_window_length); postprocess puts the windows back in text order
        order = sorted(range(len(plan)), key=lambda k: plan[k][1] - plan[k][0])
        for n, k in enumerate(order):
            yield {
                "input_ids": torch.tensor([enc["input_ids"][k]]),
                "attention_mask": torch.tensor([enc["attention_mask"][k]]),
                "window": plan[k],
                "text": text,
                "is_last": n == len(plan) - 1,
            }

    # -- a batch of windows -> tags, confidences (and memories) -----------------------------------
    def _forward(self, model_inputs: dict, num_beams: int | None = None, return_memories: bool = False) -> dict:
        input_ids, attention_mask = model_inputs["input_ids"], model_inputs["attention_mask"]
        kwargs: dict[str, Any] = {"return_tags": True}
        if num_beams is not None:
            kwargs["num_beams"] = num_beams
        out: dict[str, Any] = {}
        if input_ids.shape[1] < 3:  # only empty texts in this batch: nothing to tag
            out["tags"], out["tag_scores"] = torch.full_like(input_ids, -100), torch.zeros(input_ids.shape)
        else:
            if return_memories:
                kwargs.update(
                    memory_ids=self.model.retrieve_memories(input_ids, attention_mask), output_attentions=True
                )
            result = self.model(input_ids, attention_mask=attention_mask, **kwargs)
            out["tags"] = result.tags  # a tensor first: the batch is unrolled by its first entry's length
            out["tag_scores"] = self._tag_scores(result.logits, result.tags, attention_mask)
            if return_memories:
                out["memory_ids"], out["memory_attentions"] = kwargs["memory_ids"], result.memory_attentions
        out["lengths"] = attention_mask.sum(
            dim=1, keepdim=True
        )  # [batch, 1], so each window gets a [1, 1] when a batch is unrolled
        out.update(window=model_inputs["window"], text=model_inputs["text"], is_last=model_inputs["is_last"])
        if "index" in model_inputs:  # which text of a block (_by_window_length)
            out["index"] = model_inputs["index"]
        return out

    def _tag_scores(self, logits: torch.Tensor, tags: torch.LongTensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The probability of each chosen tag, for the windows with a tag other than ``O``: a window tagged all ``O``
        reports no score, so its tag probabilities (the CRF's forward-backward) are not computed."""
        scores = torch.zeros(tags.shape, device=tags.device)
        outside = next((int(i) for i, tag in self.model.config.id2label.items() if tag == "O"), -100)
        rows = ((tags >= 0) & (tags != outside)).any(dim=1).nonzero().flatten()
        if len(rows):
            probs = self.model.tag_probabilities(logits[rows], attention_mask[rows])
            scores[rows] = probs.to(tags.device).gather(-1, tags[rows].clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return scores

    # -- all windows of one text -> entities --------------------------------------------------------
    def postprocess(self, all_outputs: list[dict], return_memories: bool = False, force_entities: bool = False):
        text = all_outputs[0]["text"]
        all_outputs = sorted(all_outputs, key=lambda out: out["window"][:2])  # text order (preprocess sorts by length)
        pieces, windows = [], []
        for out in all_outputs:
            start, end = out["window"][:2]
            n = int(out["lengths"][0, 0]) - 2
            pieces.append(
                (out["window"], out["tags"][0, 1 : n + 1].tolist(), out["tag_scores"][0, 1 : n + 1].tolist())
            )
            if return_memories and n > 0:
                windows.append(self._memories_of(out, start, end, n))
        entities = window_entities(text, pieces, self.model.config.id2label, self.model.config.tag_scheme)
        if force_entities:
            entities = force_matches(text, entities, self._matcher.matches(text, self.model.added_entities))
        if return_memories:
            return {"entities": entities, "windows": windows}
        return entities

    def _memories_of(self, out: dict, start: int, end: int, n: int) -> dict:
        """The window's memory sentences (text, tags, entities) and the attention of its characters on theirs."""
        bank, id2label, scheme = self.model.memory_bank, self.model.config.id2label, self.model.config.tag_scheme
        ids = out["memory_ids"][0]
        _, _, memory_tag_ids = bank.gather(ids.unsqueeze(0))
        texts = bank.written_texts(ids)
        memories = []
        for j, memory_text in enumerate(texts):
            m = len(memory_text)
            tags = [id2label[int(t)] for t in memory_tag_ids[0, j, 1 : m + 1]]
            attention = out["memory_attentions"][0, j, 1 : n + 1, 1 : m + 1]
            memories.append(
                {
                    "bank_index": int(ids[j]),
                    "text": memory_text,
                    "tags": tags,
                    "entities": [
                        {"entity_group": s.type, "word": memory_text[s.start : s.end], "start": s.start, "end": s.end}
                        for s in tags_to_spans(tags, scheme, strict=False)
                    ],
                    # [window characters, memory characters]; M_j without the [CLS]/[SEP] columns
                    "attention": attention.tolist(),
                }
            )
        return {"start": start, "end": end, "memories": memories}


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=ChineseNERPipeline, pt_model=AutoModelForTokenClassification, type="text"
)

__all__ = ["ChineseNERPipeline", "TASK"]
