"""What every tagger of this project offers on top of ``forward``: tag ids and tag strings for raw input, and
the entities taught by name (:class:`.entity_dictionary.EntityDictionaryMixin`).

A model mixes this in and returns Viterbi / decoder tags from ``forward(..., return_tags=True)``
(``[batch, length]`` ids aligned with ``input_ids``, ``-100`` off characters); the pipeline, the
Space and the benchmarks only use these methods, whichever model it is.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers.dynamic_module_utils import custom_object_save

from .char_tokenization import encode_chars
from .crf import character_mask
from .entity_dictionary import EntityDictionaryMixin


class TaggerMixin(EntityDictionaryMixin):
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, and the ``chinese-ner`` pipeline with it: ``custom_pipelines``
        in ``config.json`` and ``pipeline_ner.py`` (with the files it imports) in the folder.

        Every route that saves a model comes through here (``train.py``, ``Trainer.save_model``, a
        user's ``save_pretrained`` after ``from_pretrained``, ``push_to_hub``), so a saved folder always
        holds the code its config declares."""
        from .pipeline_ner import ChineseNERPipeline

        self.config.custom_pipelines = ChineseNERPipeline.custom_pipelines_entry()
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if os.path.isdir(save_directory):
            custom_object_save(ChineseNERPipeline, save_directory)
        return result

    def export_onnx(self, folder: str | os.PathLike, quantize: bool = False) -> Path:
        """The network up to its scores as ONNX graphs, for ONNX Runtime serving without torch (``onnx_export``,
        ``onnx_pipeline.OnnxChineseNER``); ``quantize``: int8 weights."""
        from .onnx_export import export_onnx

        return export_onnx(self, folder, quantize=quantize)

    def tag_probabilities(self, logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Each position's probability of every tag, ``[batch, length, num_tags]``, from ``forward``'s
        logits: their softmax here; a CRF tagger overrides this with the CRF's marginals."""
        return logits.float().softmax(-1)

    @torch.no_grad()
    def decode(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> list[list[int]]:
        """Tag ids for each input's characters (the list has one id per character)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        tags = self(input_ids, attention_mask=attention_mask, return_tags=True, **kwargs).tags
        mask = character_mask(attention_mask)
        return [row[m].tolist() for row, m in zip(tags, mask)]

    @torch.no_grad()
    def predict_tags(self, texts: list[str], tokenizer, batch_size: int = 32, **kwargs) -> list[list[str]]:
        """Tag strings for every character of each text (texts longer than ``config.max_length - 2``
        characters are tagged on their first part only; the pipeline cuts long text into windows).
        ``kwargs`` go to ``forward`` (e.g. ``num_beams``)."""
        was_training = self.training
        self.eval()
        out: list[list[str]] = []
        for i in range(0, len(texts), batch_size):
            enc = encode_chars(tokenizer, [list(t) for t in texts[i : i + batch_size]], self.config.max_length)
            width = max(len(ids) for ids in enc["input_ids"])

            def pad(rows, v, width=width):
                return torch.tensor([r + [v] * (width - len(r)) for r in rows], device=self.device)

            input_ids, attention_mask = pad(enc["input_ids"], tokenizer.pad_token_id), pad(enc["attention_mask"], 0)
            for ids in self.decode(input_ids, attention_mask, **kwargs):
                out.append([self.config.id2label[t] for t in ids])
        self.train(was_training)
        return out


__all__ = ["TaggerMixin"]
