"""The corpus every reader returns, how it is built from examples with spans, and the error a reader raises."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence as SequenceFeature, Value

from modeling.tag_schemes import Span, check_scheme, detect_scheme, label_list, spans_to_tags, tags_to_spans
from modeling.text_splitting import split_windows

from ..errors import UserError


class DataFormatError(UserError, ValueError):
    """Malformed corpus input; the message starts with ``file:line:``."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line = str(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass
class ReadReport:
    """Sentences a reader repaired or skipped (``--bad_tags``), as ``file:line``, per split."""

    repaired: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "repaired_sentences": sum(map(len, self.repaired.values())),
            "skipped_sentences": sum(map(len, self.skipped.values())),
            "repaired": {k: v for k, v in self.repaired.items() if v},
            "skipped": {k: v for k, v in self.skipped.items() if v},
        }


@dataclass
class Corpus(Mapping):
    """A corpus as read: ``corpus["train"]`` is a split (a ``datasets.Dataset``), ``tag_scheme`` the
    scheme of its ``ner_tags``, ``notes`` what reading did to the data, ``report`` the sentences
    ``--bad_tags`` repaired or skipped."""

    splits: DatasetDict
    tag_scheme: str
    notes: list[str] = field(default_factory=list)
    report: ReadReport = field(default_factory=ReadReport)

    def __getitem__(self, split: str) -> Dataset:
        return self.splits[split]

    def __iter__(self):
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    @property
    def label_names(self) -> list[str]:
        """The tag of each ``ner_tags`` id (the same in every labelled split)."""
        return self.splits["train"].features["ner_tags"].feature.names

    def with_splits(self, splits: dict[str, Dataset], note: str | None = None) -> "Corpus":
        """The same corpus with other splits (renamed, re-cut or truncated), and a note saying how."""
        return replace(self, splits=DatasetDict(splits), notes=self.notes + ([note] if note else []))

    def truncated(self, max_train: int | None = None, max_eval: int | None = None) -> "Corpus":
        """The first ``max_train`` training and ``max_eval`` validation / test sentences (debugging, tests)."""
        limits = {"train": max_train, "validation": max_eval, "test": max_eval}
        splits = {
            k: ds.select(range(min(limits[k], len(ds)))) if limits.get(k) else ds for k, ds in self.splits.items()
        }
        if all(len(ds) == len(self.splits[k]) for k, ds in splits.items()):
            return self
        return self.with_splits(splits, "truncated to " + ", ".join(f"{k} {len(ds)}" for k, ds in splits.items()))


def _features(types: Iterable[str], scheme: str, labelled: bool = True) -> Features:
    cols = {"id": Value("string"), "tokens": SequenceFeature(Value("string"))}
    if labelled:
        cols["ner_tags"] = SequenceFeature(ClassLabel(names=label_list(types, scheme)))
    return Features(cols)


def build_corpus(
    splits: dict[str, list[dict]],
    scheme: str,
    notes: list[str] | None = None,
    types: Iterable[str] | None = None,
    report: ReadReport | None = None,
) -> Corpus:
    """``splits`` maps a split name to examples ``{"id", "tokens", "spans"}`` (``spans=None``: unlabelled).

    Tags are written in ``scheme``; the label set is the same for every split (the union of the
    entity types seen, or ``types``).
    """
    scheme = check_scheme(scheme)
    if types is None:
        types = {s.type for exs in splits.values() for ex in exs if ex["spans"] for s in ex["spans"]}
    types = sorted(types)
    out = DatasetDict()
    for name, examples in splits.items():
        labelled = all(ex["spans"] is not None for ex in examples)
        feats = _features(types, scheme, labelled)
        cols: dict[str, list] = {
            "id": [ex["id"] for ex in examples],
            "tokens": [list(ex["tokens"]) for ex in examples],
        }
        if labelled:
            cols["ner_tags"] = [spans_to_tags(ex["spans"], len(ex["tokens"]), scheme) for ex in examples]
        out[name] = Dataset.from_dict(cols, features=feats)
    return Corpus(out, scheme, list(notes or []), report or ReadReport())


def dataset_spans(dataset: Dataset, scheme: str | None = None) -> list[list[Span]]:
    """The gold spans of every example of a labelled split."""
    names = dataset.features["ner_tags"].feature.names
    scheme = scheme or detect_scheme(names)
    return [tags_to_spans([names[t] for t in tags], scheme) for tags in dataset["ner_tags"]]


def print_summary(dsd: Corpus, title: str = "corpus", file=None) -> str:
    """Print (and return) sentences and entities per type for each split, plus the read notes."""
    lines = [f"== {title} ({dsd.tag_scheme} tags)"]
    types: list[str] = []
    counts: dict[str, Counter] = {}
    for name, ds in dsd.items():
        if "ner_tags" in ds.column_names:
            c = Counter(s.type for spans in dataset_spans(ds, dsd.tag_scheme) for s in spans)
            counts[name] = c
            types = sorted(set(types) | set(c))
    header = f"{'split':<8}{'sentences':>10}{'chars':>10}{'entities':>10}" + "".join(f"{t[:12]:>13}" for t in types)
    lines.append(header)
    for name, ds in dsd.items():
        n_chars = sum(len(t) for t in ds["tokens"])
        if name in counts:
            c = counts[name]
            row = f"{name:<8}{len(ds):>10}{n_chars:>10}{sum(c.values()):>10}" + "".join(f"{c[t]:>13}" for t in types)
        else:
            row = f"{name:<8}{len(ds):>10}{n_chars:>10}  (unlabelled)"
        lines.append(row)
    for note in dsd.notes:
        lines.append(f"  note: {note}")
    text = "\n".join(lines)
    print(text, file=file)
    return text


def split_long_examples(examples: list[dict], max_chars: int, what: str = "sentences") -> tuple[list[dict], list[str]]:
    """Cut examples longer than ``max_chars`` at sentence punctuation, never inside an entity.

    Returns the new examples (ids get a ``#k`` suffix) and notes saying how many were split.
    """
    out, n_split, n_forced = [], 0, 0
    for ex in examples:
        spans = ex["spans"] or []
        windows, forced = split_windows(ex["tokens"], max_chars, [(s.start, s.end) for s in spans])
        if len(windows) == 1:
            out.append(ex)
            continue
        n_split += 1
        n_forced += forced
        for k, (a, b) in enumerate(windows):
            piece = [Span(s.type, max(s.start, a) - a, min(s.end, b) - a) for s in spans if s.start < b and s.end > a]
            out.append(
                {
                    "id": f"{ex['id']}#{k}",
                    "tokens": ex["tokens"][a:b],
                    "spans": piece if ex["spans"] is not None else None,
                }
            )
    notes = []
    if n_split:
        notes.append(
            f"{n_split} {what} longer than {max_chars} characters were split at sentence punctuation "
            f"into {n_split + len(out) - len(examples)} pieces"
            + (f"; {n_forced} entities longer than the window had to be cut" if n_forced else "; no entity was cut")
        )
    return out, notes
