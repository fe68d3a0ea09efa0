"""``chinese-ner`` on ONNX Runtime, without torch: the graphs of ``model.export_onnx(folder / "onnx")``.

    ner = OnnxChineseNER("outputs/sample-memory")      # the model folder, with its onnx/ subfolder
    ner("林晓梅在深圳市福田区出席了行业论坛。")              # the same entities as the torch pipeline

The windows, the batching of a list's windows by length, Viterbi and the tag probabilities (``crf_numpy``) and the
entity rules (``entity_spans``) are the torch pipeline's own code; the memory network retrieves its memories with
``retrieval`` as the model does and keeps the bank sentences' encodings once computed. Imports neither torch nor a
model class: NumPy, ONNX Runtime and the tokenizer.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .char_tokenization import encode_chars, texts_of_ids
from .crf_numpy import crf_arrays, marginals, viterbi
from .entity_dictionary import DictionaryMatcher, force_matches
from .entity_spans import window_entities
from .text_splitting import plan_windows

ONNX_FOLDER = "onnx"  # where a model folder keeps its exported graphs


class OnnxChineseNER:
    """Entity spans for a string or a list of strings, as ``pipeline("chinese-ner")`` returns them."""

    def __init__(self, folder: str | Path, threads: int | None = None, batch_size: int = 32, cache_size: int = 4096):
        import onnxruntime as ort
        from transformers import PreTrainedTokenizerFast

        folder = Path(folder)
        graphs = folder / ONNX_FOLDER
        if not (graphs / "encoder.onnx").exists():
            raise FileNotFoundError(
                f"{graphs}/encoder.onnx: export the model first (model.export_onnx({str(graphs)!r}))"
            )
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.id2label = {int(k): v for k, v in config["id2label"].items()}
        self.outside = next((k for k, v in self.id2label.items() if v == "O"), -100)
        self.scheme, self.max_length = config["tag_scheme"], config["max_length"]
        self.num_memory, self.method = config.get("num_memory", 0), config.get("memory_method")
        self.added_entities = {s: t for s, t in config.get("added_entities", [])}
        self.batch_size = batch_size
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)  # no model config, no remote code
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.encoder = ort.InferenceSession(str(graphs / "encoder.onnx"), options)
        self.head = ort.InferenceSession(str(graphs / "head.onnx"), options)
        self.head_inputs = {i.name for i in self.head.get_inputs()}
        crf = np.load(graphs / "crf.npz")
        self.crf = (crf["start"], crf["transitions"], crf["end"])
        self.matcher = DictionaryMatcher()
        if self.num_memory:
            self._load_bank(graphs / "bank.npz", cache_size)

    def _load_bank(self, path: Path, cache_size: int) -> None:
        from .retrieval import BankIndex, CLASSIFIER_METHODS

        if self.method in CLASSIFIER_METHODS:
            raise ValueError(f"ONNX serving retrieves by {self.method!r} only with the entity-type classifier, which "
                             "is not exported; use the torch pipeline")  # fmt: skip
        bank = np.load(path)
        self.bank = {k: bank[k] for k in bank.files}
        lengths = self.bank["lengths"]
        rows = [row[:n] for row, n in zip(self.bank["input_ids"].tolist(), lengths.tolist())]
        self.bank_texts = texts_of_ids(self.bank["token_chars"], rows)
        self.bank_pos = ["".join(chr(c) for c in row if c) for row in self.bank["pos"].tolist()]
        labels = [[t for t in row if t != -100] for row in self.bank["labels"].tolist()]
        self.index = BankIndex.of_labels(self.bank_texts, labels, self.id2label, self.scheme)
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()  # bank index -> its encoding [length, d]
        self.cache_size = cache_size

    def __call__(self, inputs: str | list[str], batch_size: int | None = None, force_entities: bool = False):
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"expected a string or a list of strings, got {type(inputs).__name__}")
        batch_size = batch_size or self.batch_size
        windows = []  # (text index, window, ids)
        for k, text in enumerate(texts):
            plan = plan_windows(text, self.max_length - 2) if text else []
            enc = encode_chars(self.tokenizer, [list(text[a:b]) for a, b, _, _ in plan], self.max_length)
            windows += [(k, w, ids) for w, ids in zip(plan, enc["input_ids"])]
        pieces: list[list] = [[] for _ in texts]
        order = sorted(range(len(windows)), key=lambda i: len(windows[i][2]))  # little padding in a batch
        for first in range(0, len(order), batch_size):
            batch = [windows[i] for i in order[first : first + batch_size]]
            tags, scores = self._tag([ids for _, _, ids in batch])
            for (k, window, ids), row_tags, row_scores in zip(batch, tags, scores):
                n = len(ids) - 2
                pieces[k].append((window, row_tags[:n], row_scores[:n]))
        out = []
        for text, text_pieces in zip(texts, pieces):
            entities = window_entities(text, sorted(text_pieces, key=lambda p: p[0][:2]), self.id2label, self.scheme)
            if force_entities:
                entities = force_matches(text, entities, self.matcher.matches(text, self.added_entities))
            out.append(entities)
        return out[0] if isinstance(inputs, str) else out

    def _tag(self, rows: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
        """Tag ids and their probabilities of each character of ``[CLS] chars [SEP]`` rows."""
        width = max(map(len, rows))
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, ids in enumerate(rows):
            input_ids[r, : len(ids)], attention_mask[r, : len(ids)] = ids, 1
        hidden = self.encoder.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        feeds = {"hidden": hidden, "attention_mask": attention_mask}
        if self.num_memory:
            feeds.update(self._memories(input_ids, attention_mask))
        emissions = self.head.run(None, {k: v for k, v in feeds.items() if k in self.head_inputs})[0]
        arrays = crf_arrays(emissions, attention_mask)
        paths = viterbi(*arrays, *self.crf)
        # as the torch pipeline: a row tagged all O reports no score, so its marginals are not computed
        chosen = np.zeros(paths.shape, dtype=np.float32)
        rows = np.flatnonzero(((paths >= 0) & (paths != self.outside)).any(axis=1))
        if len(rows):
            probs = marginals(*(a[rows] for a in arrays), *self.crf)
            if probs is None:  # underflow: a uniform confidence rather than none
                probs = np.ones(arrays[0][rows].shape, dtype=np.float32)
            chosen[rows] = np.take_along_axis(probs, np.maximum(paths[rows], 0)[..., None], axis=-1)[..., 0]
        return [p[p >= 0].tolist() for p in paths], [c[p >= 0].tolist() for c, p in zip(chosen, paths)]

    def _memories(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict:
        """``memory_hidden`` and ``memory_tag_ids`` of each row's memories (retrieved as the model retrieves)."""
        from .retrieval import POS_METHODS, pos_strings, rank_memories

        rows = [row[:n] for row, n in zip(input_ids.tolist(), attention_mask.sum(axis=1).tolist())]
        texts = texts_of_ids(self.bank["token_chars"], rows)
        query_pos = pos_strings(texts) if self.method in POS_METHODS else [""] * len(texts)
        ids = rank_memories(self.method, self.num_memory, self.bank_pos, self.bank["types"], query_pos,
                            query_texts=texts, bank_texts=self.bank_texts, index=self.index)  # fmt: skip
        lengths = self.bank["lengths"][ids]
        width = int(lengths.max())
        encoded = self._encoded(sorted(set(ids.flatten().tolist())))
        d = next(iter(encoded.values())).shape[-1]
        memory_hidden = np.zeros((*ids.shape, width, d), dtype=np.float32)
        for (b, j), i in np.ndenumerate(ids):
            memory_hidden[b, j, : lengths[b, j]] = encoded[i][: lengths[b, j]]
        return {
            "memory_hidden": memory_hidden,
            "memory_tag_ids": self.bank["labels"][ids][..., :width].astype(np.int64),
        }

    def _encoded(self, wanted: list[int], chunk: int = 64) -> dict[int, np.ndarray]:
        """Encodings of these bank sentences: cached ones, the others encoded ``chunk`` at a time (least recently
        used dropped past ``cache_size``)."""
        missing = [i for i in wanted if i not in self.cache]
        for first in range(0, len(missing), chunk):
            part = missing[first : first + chunk]
            lengths = self.bank["lengths"][part]
            width = int(lengths.max())
            input_ids = self.bank["input_ids"][part, :width].astype(np.int64)
            attention_mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
            hidden = self.encoder.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
            for i, h, n in zip(part, hidden, lengths):
                self.cache[i] = h[:n]
        for i in wanted:
            self.cache.move_to_end(i)
        out = {i: self.cache[i] for i in wanted}
        while len(self.cache) > max(self.cache_size, len(wanted)):
            self.cache.popitem(last=False)
        return out
