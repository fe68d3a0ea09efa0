"""Tag schemes for character-level NER and lossless conversion between them.

Every scheme is a way of writing the same thing, a set of entity spans ``(type, start, end)``
over the characters of a sentence (``end`` exclusive). Conversion therefore always goes
``tags -> spans -> tags``, which makes round trips lossless by construction.

=========  ======================  ==========================  =====================
scheme     multi-char entity       single-char entity          outside
=========  ======================  ==========================  =====================
``BIO``    ``B-X I-X ... I-X``     ``B-X``                     ``O``
``BIOS``   ``B-X I-X ... I-X``     ``S-X``                     ``O``
``BIOES``  ``B-X I-X ... E-X``     ``S-X``                     ``O``
``BIEO``   ``B-X I-X ... E-X``     ``B-X`` (not followed)      ``O``
``BMES``   ``B-X M-X ... E-X``     ``S-X``                     ``O``
=========  ======================  ==========================  =====================

``BIOS`` is the memory-network paper's scheme (4 position bits B, I, O, S); ``BIEO`` is the
seq2seq paper's. In ``BIEO`` a two-character entity is ``B-X E-X``.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

SCHEMES = ("BIO", "BIOS", "BIOES", "BIEO", "BMES")

# prefix letters each scheme uses: begin, inside, end, single
_PREFIXES = {
    "BIO": ("B", "I", "I", "B"),
    "BIOS": ("B", "I", "I", "S"),
    "BIOES": ("B", "I", "E", "S"),
    "BIEO": ("B", "I", "E", "B"),
    "BMES": ("B", "M", "E", "S"),
}


class Span(NamedTuple):
    """An entity: its type and character offsets ``[start, end)``."""

    type: str
    start: int
    end: int


class TagSequenceError(ValueError):
    """A tag sequence that is not valid in the scheme it claims to be in; ``position`` is the
    offending tag's index (the sequence's length when an entity is left open), when known."""

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message)
        self.position = position


def split_tag(tag: str) -> tuple[str, str | None]:
    """``'B-PER' -> ('B', 'PER')``, ``'O' -> ('O', None)``. Accepts ``B_PER`` too."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIMESU":
        return tag[0], tag[2:]
    raise TagSequenceError(f"unknown tag {tag!r} (expected 'O' or '<prefix>-<type>')")


def check_scheme(scheme: str) -> str:
    """``scheme`` in upper case; a ValueError naming the schemes if it is none of them."""
    up = scheme.upper()
    if up not in _PREFIXES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return up


def detect_scheme(tag_sets: Iterable[str]) -> str:
    """Guess the scheme from the set of tags a corpus uses.

    ``M`` means BMES; ``E`` with ``S`` means BIOES; ``E`` without ``S`` means BIEO; ``S``
    without ``E`` means BIOS; otherwise BIO. A corpus without any single-character entity
    written in BIOES is indistinguishable from BIEO, and both read it identically.
    """
    prefixes = {split_tag(t)[0] for t in tag_sets}
    if "M" in prefixes:
        return "BMES"
    if "E" in prefixes:
        return "BIOES" if "S" in prefixes else "BIEO"
    if "S" in prefixes:
        return "BIOS"
    return "BIO"


def tags_to_spans(tags: Sequence[str], scheme: str, strict: bool = True) -> list[Span]:
    """Read the entity spans a tag sequence writes.

    ``strict=True`` raises :class:`TagSequenceError` (with the position) on an ill-formed sequence,
    e.g. ``O I-PER`` or ``B-PER I-LOC``; this is what readers of gold data use. ``strict=False``
    is for model predictions: ill-formed pieces are not entities (seqeval's strict mode), so a
    prediction gets credit only for spans it writes correctly.
    """
    b, i, e, s = _PREFIXES[check_scheme(scheme)]
    scheme = scheme.upper()
    spans: list[Span] = []
    open_type: str | None = None
    open_start = 0

    def fail(pos: int, why: str) -> None:
        if strict:
            raise TagSequenceError(
                f"position {pos}: {why} in {scheme} ({' '.join(tags[max(0, pos - 2) : pos + 2])})", pos
            )

    for pos, tag in enumerate(tags):
        prefix, etype = split_tag(tag)
        if prefix != "O" and prefix not in (b, i, e, s):
            raise TagSequenceError(f"position {pos}: tag {tag!r} is not a {scheme} tag", pos)
        # does this tag continue the open entity?
        continues = (
            open_type is not None
            and etype == open_type
            and prefix in (i, e)
            and not (scheme in ("BIO", "BIOS") and prefix != i)
        )
        if open_type is not None and not continues:
            # the open entity ended at pos - 1; is that a legal ending?
            if scheme in ("BIOES", "BMES"):
                fail(pos, f"entity {open_type} opened at {open_start} is not closed with {e}-")
                open_type = None
            else:  # BIO, BIOS, BIEO: an entity may end on B/I (BIEO: only on B = single char)
                last_prefix = split_tag(tags[pos - 1])[0]
                if scheme == "BIEO" and last_prefix == i:
                    fail(pos, f"entity {open_type} opened at {open_start} is not closed with E-")
                    open_type = None
                else:
                    spans.append(Span(open_type, open_start, pos))
                    open_type = None
        if prefix == "O":
            continue
        if continues:
            if prefix == e and scheme in ("BIOES", "BIEO", "BMES"):
                spans.append(Span(open_type, open_start, pos + 1))
                open_type = None
            continue
        if prefix == s and s != b:
            spans.append(Span(etype, pos, pos + 1))
        elif prefix == b:
            open_type, open_start = etype, pos
        else:  # an inside/end tag with nothing open of its type
            fail(pos, f"{tag} does not continue an entity")
    if open_type is not None:
        last_prefix = split_tag(tags[-1])[0]
        if scheme in ("BIOES", "BMES") or (scheme == "BIEO" and last_prefix == i):
            fail(len(tags), f"entity {open_type} opened at {open_start} is not closed at the end")
        else:
            spans.append(Span(open_type, open_start, len(tags)))
    return spans


def lenient_spans(tags: Sequence[str], scheme: str) -> list[Span]:
    """Read the spans of a possibly ill-formed tag sequence as conlleval and seqeval's default
    mode do: an entity ends where the next tag is ``O``, a begin or single tag, another type, or
    follows an end or single tag; an inside or end tag that continues nothing starts an entity.
    ``... M-ORG`` at a sentence's end is an entity up to there; ``M-ORG ...`` at its start begins
    one. On a well-formed sequence this is :func:`tags_to_spans`. Unknown tags still raise."""
    b, i, e, s = _PREFIXES[check_scheme(scheme)]
    single_is_begin = s == b  # BIO and BIEO write a one-character entity as a lone begin tag
    spans: list[Span] = []
    open_type: str | None = None  # None also right after an end or single tag
    open_start = 0
    for pos, tag in enumerate(tags):
        prefix, etype = split_tag(tag)
        if prefix != "O" and prefix not in (b, i, e, s):
            raise TagSequenceError(f"position {pos}: tag {tag!r} is not a {scheme.upper()} tag", pos)
        continues = open_type is not None and etype == open_type and prefix in (i, e) and prefix != b
        if open_type is not None and not continues:
            spans.append(Span(open_type, open_start, pos))
            open_type = None
        if prefix == "O":
            continue
        if not continues:
            open_type, open_start = etype, pos
        if (prefix == e and e != i) or (prefix == s and not single_is_begin):
            spans.append(Span(open_type, open_start, pos + 1))
            open_type = None
    if open_type is not None:
        spans.append(Span(open_type, open_start, len(tags)))
    return spans


def spans_to_tags(spans: Iterable[Span | tuple], length: int, scheme: str) -> list[str]:
    """Write spans as a tag sequence of ``length`` in ``scheme``. Overlapping spans are an error."""
    b, i, e, s = _PREFIXES[check_scheme(scheme)]
    tags = ["O"] * length
    for etype, start, end in spans:
        if not 0 <= start < end <= length:
            raise TagSequenceError(f"span {etype} [{start}, {end}) lies outside a sentence of {length} characters")
        if any(t != "O" for t in tags[start:end]):
            raise TagSequenceError(f"span {etype} [{start}, {end}) overlaps another entity")
        if end - start == 1:
            tags[start] = f"{s}-{etype}"
            continue
        tags[start] = f"{b}-{etype}"
        for k in range(start + 1, end - 1):
            tags[k] = f"{i}-{etype}"
        tags[end - 1] = f"{e}-{etype}"
    return tags


def convert_tags(tags: Sequence[str], source: str, target: str, strict: bool = True) -> list[str]:
    """Rewrite a tag sequence from one scheme to another (via spans, so lossless)."""
    return spans_to_tags(tags_to_spans(tags, source, strict=strict), len(tags), target)


def label_list(entity_types: Iterable[str], scheme: str) -> list[str]:
    """All tags of ``scheme`` for these types, ``O`` first, then types in sorted order."""
    b, i, e, s = _PREFIXES[check_scheme(scheme)]
    prefixes = list(dict.fromkeys((b, i, e, s)))
    return ["O"] + [f"{p}-{t}" for t in sorted(set(entity_types)) for p in prefixes]
