"""Every model and the pipeline on each device there is: the same entities as on the CPU (CUDA tests are skipped on
a machine without it; ``benchmarks/gpu_check.sh`` runs them where there is one)."""

from __future__ import annotations

import sys

import pytest
import torch

from conftest import ROOT, load_pipeline

sys.path.insert(0, str(ROOT))

from modeling import MemoryNetForTokenClassification, Seq2SeqAttnTagger  # noqa: E402

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
TEXTS = [
    "林晓梅是青禾科技的首席执行官，她昨天在杭州市西湖区发布了新产品。",
    "市教育局宣布，今年秋季起全市中小学将推广午间阅读。" * 4,
    "",
    "周末我们去了西湖。",
]


def spans(answers) -> list:
    return [[(e["word"], e["entity_group"], e["start"], e["end"]) for e in entities] for entities in answers]


def on(ner, device: str):
    """The same pipeline class around the model moved to ``device``."""
    return type(ner)(model=ner.model.to(device), tokenizer=ner.tokenizer, device=torch.device(device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fixture, cls", [("swap_run", MemoryNetForTokenClassification),
                                          ("lexicon_run", MemoryNetForTokenClassification),
                                          ("seq2seq_run", Seq2SeqAttnTagger)])  # fmt: skip
def test_the_pipeline_tags_the_same_on_every_device(request, device, fixture, cls):
    folder, _ = request.getfixturevalue(fixture)
    cpu = load_pipeline(folder, cls)
    expected, scores = spans(cpu(TEXTS)), [[e["score"] for e in ents] for ents in cpu(TEXTS)]
    ner = on(load_pipeline(folder, cls), device)
    for batch_size in (1, 32):
        answers = ner(TEXTS, batch_size=batch_size)
        assert spans(answers) == expected
        got = [[e["score"] for e in ents] for ents in answers]
        assert all(abs(a - b) < 1e-4 for x, y in zip(got, scores) for a, b in zip(x, y))
    if cls is MemoryNetForTokenClassification:
        out = ner(TEXTS[0], return_memories=True)
        assert out["windows"][0]["memories"] and spans([out["entities"]]) == expected[:1]
        ner.add_entities({"青禾书局": "company"})  # bank rows, templates and the retrieval index on the device
        ner("他在青禾书局买了书。")
        ner.remove_entities(["青禾书局"])
        assert spans(ner(TEXTS)) == expected
    if device == "cuda":  # runs under bf16 autocast (the entities may differ); on a CPU it only tests the CPU's bf16
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            assert len(ner(TEXTS, batch_size=32)) == len(TEXTS)
