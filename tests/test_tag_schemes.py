import itertools
import random

import pytest

from modeling.tag_schemes import (
    SCHEMES,
    Span,
    TagSequenceError,
    convert_tags,
    detect_scheme,
    label_list,
    spans_to_tags,
    tags_to_spans,
)


def random_spans(rng: random.Random, length: int) -> list[Span]:
    spans, pos = [], 0
    while pos < length:
        pos += rng.randint(0, 3)
        size = rng.randint(1, 4)
        if pos + size > length:
            break
        spans.append(Span(rng.choice(["PER", "LOC", "ORG"]), pos, pos + size))
        pos += size
    return spans


@pytest.mark.parametrize("source,target", list(itertools.product(SCHEMES, SCHEMES)))
def test_round_trips_are_lossless(source, target):
    rng = random.Random(f"{source}->{target}")  # a str seed is hashed by SHA-512, the same in every process
    for _ in range(200):
        length = rng.randint(1, 20)
        spans = random_spans(rng, length)
        tags = spans_to_tags(spans, length, source)
        assert tags_to_spans(tags, source) == spans
        there = convert_tags(tags, source, target)
        assert convert_tags(there, target, source) == tags
        assert tags_to_spans(there, target) == spans


def test_scheme_specific_writing():
    spans = [Span("PER", 0, 1), Span("LOC", 2, 5)]
    assert spans_to_tags(spans, 6, "BIO") == ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
    assert spans_to_tags(spans, 6, "BIOS") == ["S-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
    assert spans_to_tags(spans, 6, "BIOES") == ["S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "O"]
    assert spans_to_tags(spans, 6, "BIEO") == ["B-PER", "O", "B-LOC", "I-LOC", "E-LOC", "O"]
    assert spans_to_tags(spans, 6, "BMES") == ["S-PER", "O", "B-LOC", "M-LOC", "E-LOC", "O"]


def test_detect_scheme():
    assert detect_scheme(["O", "B-PER", "I-PER"]) == "BIO"
    assert detect_scheme(["O", "B-PER", "I-PER", "S-LOC"]) == "BIOS"
    assert detect_scheme(["O", "B-PER", "E-PER", "S-LOC"]) == "BIOES"
    assert detect_scheme(["O", "B-PER", "I-PER", "E-PER"]) == "BIEO"
    assert detect_scheme(["O", "B-PER", "M-PER", "E-PER", "S-LOC"]) == "BMES"


@pytest.mark.parametrize(
    "tags,scheme,lenient",
    [
        (["O", "I-PER"], "BIO", []),
        (["B-PER", "I-LOC"], "BIO", [Span("PER", 0, 1)]),
        (["B-PER", "I-PER", "O"], "BIOES", []),
        (["B-PER", "I-PER"], "BIEO", []),
        (["E-PER", "S-LOC"], "BMES", [Span("LOC", 1, 2)]),
    ],
)
def test_ill_formed_gold_is_an_error_and_prediction_is_not_an_entity(tags, scheme, lenient):
    with pytest.raises(TagSequenceError, match="position"):
        tags_to_spans(tags, scheme, strict=True)
    assert tags_to_spans(tags, scheme, strict=False) == lenient


def test_label_list():
    assert label_list(["PER", "LOC"], "BIOS") == ["O", "B-LOC", "I-LOC", "S-LOC", "B-PER", "I-PER", "S-PER"]
    assert label_list(["PER"], "BIEO") == ["O", "B-PER", "I-PER", "E-PER"]
