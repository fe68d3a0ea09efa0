"""``chinese-ner`` on ONNX Runtime, without torch: the graphs of ``model.export_onnx(folder / "onnx")``, either
architecture.

    ner = OnnxChineseNER("outputs/sample-memory")      # the model folder, with its onnx/ subfolder
    ner("林晓梅在深圳市福田区出席了行业论坛。")              # the same entities as the torch pipeline

The windows, the batching of a list's windows by length, Viterbi and the tag probabilities (``crf_numpy``) and the
entity rules (``entity_spans``) are the torch pipeline's own code; the seq2seq decoder's loop (greedy or beam) runs
here in NumPy around the exported step, as ``Seq2SeqAttnTagger`` runs it in torch; the memory network retrieves its
memories with ``retrieval`` as the model does and keeps the bank sentences' encodings once computed. Imports neither
torch nor a model class: NumPy, ONNX Runtime and the tokenizer.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .char_features_numpy import CharFeaturesArrays
from .char_tokenization import encode_chars, texts_of_ids
from .crf_numpy import crf_arrays, marginals, viterbi
from .entity_dictionary import (
    DictionaryMatcher,
    EntityDictionaryConfig,
    force_matches,
    keep_taught_tag_ids,
    taught_as_read,
)
from .entity_spans import window_entities
from .text_splitting import plan_windows

ONNX_FOLDER = "onnx"  # where a model folder keeps its exported graphs


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(x))


class OnnxChineseNER:
    """Entity spans for a string or a list of strings, as ``pipeline("chinese-ner")`` returns them."""

    def __init__(
        self,
        folder: str | Path,
        threads: int | None = None,
        batch_size: int = 32,
        cache_size: int = 4096,
        graphs: str = ONNX_FOLDER,
    ):
        """``folder``: the model folder (its config and tokenizer); ``graphs``: its subfolder that holds the
        exported graphs; ``threads``: ONNX Runtime's intra-op threads (its default: one a core)."""
        import onnxruntime as ort
        from transformers import PreTrainedTokenizerFast

        folder = Path(folder)
        graphs = folder / graphs
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.seq2seq = (graphs / "decoder_step.onnx").exists()  # onnx_export writes it for the seq2seq tagger only
        self.num_memory, self.method = config.get("num_memory", 0), config.get("memory_method")
        names = ["encoder", "head"] if self.num_memory else ["emissions"]
        if self.seq2seq:
            names = ["encoder", "decoder_step"]
        if not all((graphs / f"{name}.onnx").exists() for name in names):
            raise FileNotFoundError(f"{graphs}: no {names[0]}.onnx; export the model first "
                                    f"(model.export_onnx({str(graphs)!r}))")  # fmt: skip
        self.id2label = {int(k): v for k, v in config["id2label"].items()}
        self.outside = next((k for k, v in self.id2label.items() if v == "O"), -100)
        self.scheme, self.max_length = config["tag_scheme"], config["max_length"]
        self.num_beams = config.get("num_beams", 1)
        self.added_entities = {s: t for s, t in config.get("added_entities", [])}
        # config.json holds the fields that differ from their defaults
        self.taught_entities_only = config.get("taught_entities_only", EntityDictionaryConfig.taught_entities_only)
        self.batch_size = batch_size
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)  # no model config, no remote code
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.sessions = {name: ort.InferenceSession(str(graphs / f"{name}.onnx"), options) for name in names}
        self.inputs = {name: {i.name for i in session.get_inputs()} for name, session in self.sessions.items()}
        if self.seq2seq:
            decoding = np.load(graphs / "decoding.npz")
            self.allowed, self.can_end, self.go_id = decoding["allowed"], decoding["can_end"], int(decoding["go_id"])
        else:
            crf = np.load(graphs / "crf.npz")
            self.crf = (crf["start"], crf["transitions"], crf["end"])
        self.matcher = DictionaryMatcher()
        self.features = None
        if (graphs / "features.npz").exists():
            self.features = CharFeaturesArrays(np.load(graphs / "features.npz"))
        if self.num_memory:
            self._load_bank(graphs / "bank.npz", cache_size)

    def _run(self, name: str, **feeds) -> list[np.ndarray]:
        if "features" in self.inputs[name]:  # the BiLSTM's input features, beside its input ids
            feeds["features"] = self.features(feeds["input_ids"], feeds["attention_mask"])
        return self.sessions[name].run(None, {k: v for k, v in feeds.items() if k in self.inputs[name]})

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
        self.num_sentence_memories = k = len(lengths) - len(self.added_entities)  # the taught entities' memories last
        # the whole bank's index, and the labelled sentences' alone (the reading before any entity was taught)
        self.indexes = {False: BankIndex.of_labels(self.bank_texts, labels, self.id2label, self.scheme)}
        if self.added_entities:
            self.indexes[True] = BankIndex.of_labels(self.bank_texts[:k], labels[:k], self.id2label, self.scheme)
            tags = [[self.id2label[t] for t in row] for row in labels[k:]]
            self.taught_read = taught_as_read(self.bank_texts[k:], tags, self.added_entities, self.scheme)
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()  # bank index -> its encoding [length, d]
        self.cache_size = cache_size

    def __call__(
        self,
        inputs: str | list[str],
        batch_size: int | None = None,
        force_entities: bool = False,
        num_beams: int | None = None,
    ):
        """The pipeline's call: ``batch_size`` windows a run, ``force_entities``, ``num_beams`` (seq2seq tagger)."""
        if num_beams is not None and not self.seq2seq:
            raise ValueError("num_beams applies to the seq2seq tagger; this model decodes with a CRF")
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
            tags, scores = self._tag([ids for _, _, ids in batch], num_beams or self.num_beams)
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

    def _tag(self, rows: list[list[int]], num_beams: int) -> tuple[list[list[int]], list[list[float]]]:
        """Tag ids and their probabilities of each character of ``[CLS] chars [SEP]`` rows."""
        width = max(map(len, rows))
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, ids in enumerate(rows):
            input_ids[r, : len(ids)], attention_mask[r, : len(ids)] = ids, 1
        if self.seq2seq:
            paths, probs = self._decode(input_ids, attention_mask, num_beams)
        else:
            paths, probs = self._crf_decode(input_ids, attention_mask)
        return [p[p >= 0].tolist() for p in paths], [c[p >= 0].tolist() for c, p in zip(probs, paths)]

    def _emissions(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, memory_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The emissions and, for the memory network, the memories' bank indices (retrieved unless given)."""
        if not self.num_memory:
            return self._run("emissions", input_ids=input_ids, attention_mask=attention_mask)[0], None
        hidden = self._run("encoder", input_ids=input_ids, attention_mask=attention_mask)[0]
        if memory_ids is None:
            memory_ids = self._retrieve(input_ids, attention_mask)
        memories = self._memories(memory_ids)
        return self._run("head", hidden=hidden, attention_mask=attention_mask, **memories)[0], memory_ids

    def _crf_decode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Viterbi tags ``[rows, characters]`` (``-100`` off characters) and the chosen tags' marginals."""
        emissions, memory_ids = self._emissions(input_ids, attention_mask)
        paths = viterbi(*crf_arrays(emissions, attention_mask), *self.crf)
        if memory_ids is not None and self.added_entities and self.taught_entities_only:
            emissions, paths = self._keep_taught_entities(input_ids, attention_mask, memory_ids, emissions, paths)
        arrays = crf_arrays(emissions, attention_mask)
        # as the torch pipeline: a row tagged all O reports no score, so its marginals are not computed
        chosen = np.zeros(paths.shape, dtype=np.float32)
        rows = np.flatnonzero(((paths >= 0) & (paths != self.outside)).any(axis=1))
        if len(rows):
            probs = marginals(*(a[rows] for a in arrays), *self.crf)
            if probs is None:  # underflow: a uniform confidence rather than none
                probs = np.ones(arrays[0][rows].shape, dtype=np.float32)
            chosen[rows] = np.take_along_axis(probs, np.maximum(paths[rows], 0)[..., None], axis=-1)[..., 0]
        return paths, chosen

    def _keep_taught_entities(self, input_ids, attention_mask, memory_ids, emissions, paths):
        """``MemoryNetForTokenClassification._keep_taught_entities``: each row read again as before the entities were
        taught where that changes its memories, the two readings merged by ``keep_taught_entities``."""
        own_ids = self._retrieve(input_ids, attention_mask, sentences_only=True)
        rows = np.flatnonzero((own_ids != memory_ids).any(axis=1))
        if not len(rows):
            return emissions, paths
        own_emissions, _ = self._emissions(input_ids[rows], attention_mask[rows], own_ids[rows])
        own_paths = viterbi(*crf_arrays(own_emissions, attention_mask[rows]), *self.crf)
        read_emissions, emissions, paths = emissions, emissions.copy(), paths.copy()
        lengths = attention_mask[rows].sum(axis=1)
        texts = texts_of_ids(self.bank["token_chars"], [row[:n] for row, n in zip(input_ids[rows].tolist(), lengths)])
        for k, (r, text) in enumerate(zip(rows, texts)):
            n = len(text)
            read = paths[r, :n].tolist()
            emissions[r], paths[r] = own_emissions[k], own_paths[k]
            merged = keep_taught_tag_ids(text, own_paths[k, :n].tolist(), read, self.id2label, self.scheme,
                                         self.taught_read)  # fmt: skip
            if merged is not None:
                new, from_read = merged
                paths[r, :n] = new
                kept = 1 + np.flatnonzero(from_read)  # emissions keep the [CLS] column
                emissions[r, kept] = read_emissions[r, kept]
        return emissions, paths

    def _decode(self, input_ids: np.ndarray, attention_mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The seq2seq tagger's decoding (``Seq2SeqAttnTagger.greedy_decode`` / ``beam_search``, step for step in
        NumPy): tags ``[rows, characters]`` and the decoder's softmax probability of each."""
        encoded = self._run("encoder", input_ids=input_ids, attention_mask=attention_mask)
        hidden, state_h, state_c, keys, values = encoded
        batch, steps = len(input_ids), input_ids.shape[1] - 2
        num_chars = attention_mask.sum(axis=1) - 2
        if k > 1:  # every row's k beams side by side
            hidden, attention_mask, num_chars, state_h, state_c, keys, values = (
                np.repeat(x, k, axis=0) for x in (hidden, attention_mask, num_chars, state_h, state_c, keys, values)
            )
        prev = np.full(len(hidden), self.go_id, dtype=np.int64)
        scores = np.full((batch, k), -np.inf, dtype=np.float32)
        scores[:, 0] = 0.0  # one live beam at the start
        num_labels = len(self.id2label)
        done_row = np.full(num_labels, -np.inf, dtype=np.float32)
        done_row[0] = 0.0  # after its last character a beam extends by one ignored tag at no cost
        offsets = (np.arange(batch) * k)[:, None]
        history = []  # per step: chosen tag [batch, k], parent beam [batch, k], step logits [batch, k, num_labels]
        for i in range(steps):
            logits, state_h, state_c = self._run("decoder_step", prev_tags=prev, state_h=state_h, state_c=state_c,
                                                 keys=keys, values=values, attention_mask=attention_mask,
                                                 hidden_i=hidden[:, i + 1])  # fmt: skip
            allowed = self.allowed[prev] & (self.can_end[None] | (num_chars - 1 != i)[:, None])
            if k == 1:
                prev = np.where(allowed, logits, np.finfo(logits.dtype).min).argmax(axis=-1)
                history.append((prev[:, None], None, logits[:, None]))
                continue
            log_probs = np.where(allowed, _log_softmax(logits), -np.inf)
            log_probs = np.where((i < num_chars)[:, None], log_probs, done_row)
            total = (scores[:, :, None] + log_probs.reshape(batch, k, num_labels)).reshape(batch, k * num_labels)
            index = np.argsort(-total, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(total, index, axis=1)
            parent, tag = index // num_labels, index % num_labels
            rows = (offsets + parent).ravel()
            state_h, state_c, prev = state_h[rows], state_c[rows], tag.ravel()
            history.append((tag, parent, logits.reshape(batch, k, num_labels)))
        tags = np.full((batch, steps), -100, dtype=np.int64)
        probs = np.zeros((batch, steps), dtype=np.float32)
        best = scores.argmax(axis=1) if k > 1 else np.zeros(batch, dtype=np.int64)
        rows = np.arange(batch)
        for i in range(steps - 1, -1, -1):
            tag, parent, logits = history[i]
            tags[:, i] = tag[rows, best]
            if parent is not None:
                best = parent[rows, best]
            probs[:, i] = np.take_along_axis(_softmax(logits[rows, best]), tags[:, i, None], axis=1)[:, 0]
        off = np.arange(steps) >= num_chars[::k, None]
        return np.where(off, -100, tags), np.where(off, 0.0, probs)

    def _retrieve(self, input_ids: np.ndarray, attention_mask: np.ndarray, sentences_only: bool = False) -> np.ndarray:
        """Each row's memories' bank indices, retrieved as the model retrieves (``sentences_only``: from the labelled
        sentences alone)."""
        from .retrieval import POS_METHODS, pos_strings, rank_memories

        rows = [row[:n] for row, n in zip(input_ids.tolist(), attention_mask.sum(axis=1).tolist())]
        texts = texts_of_ids(self.bank["token_chars"], rows)
        query_pos = pos_strings(texts) if self.method in POS_METHODS else [""] * len(texts)
        return rank_memories(self.method, self.num_memory, self.bank_pos, self.bank["types"], query_pos,
                             query_texts=texts, bank_texts=self.bank_texts, index=self.indexes[sentences_only],
                             rows_limit=self.num_sentence_memories if sentences_only else None)  # fmt: skip

    def _memories(self, ids: np.ndarray) -> dict:
        """``memory_hidden`` and ``memory_tag_ids`` of the memories with these bank indices ``[rows, n]``."""
        lengths = self.bank["lengths"][ids]
        width = int(lengths.max())
        encoded = self._encoded(sorted(set(ids.flatten().tolist())))
        d = next(iter(encoded.values())).shape[-1]
        memory_hidden = np.zeros((*ids.shape, width, d), dtype=np.float32)
        for (b, j), i in np.ndenumerate(ids):
            memory_hidden[b, j, : lengths[b, j]] = encoded[i][: lengths[b, j]]
        memory_tag_ids = self.bank["labels"][ids][..., :width].astype(np.int64)
        return {"memory_hidden": memory_hidden, "memory_tag_ids": memory_tag_ids}

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
            hidden = self._run("encoder", input_ids=input_ids, attention_mask=attention_mask)[0]
            for i, h, n in zip(part, hidden, lengths):
                self.cache[i] = h[:n]
        for i in wanted:
            self.cache.move_to_end(i)
        out = {i: self.cache[i] for i in wanted}
        while len(self.cache) > max(self.cache_size, len(wanted)):
            self.cache.popitem(last=False)
        return out
