"""Named corpora and user files -> a :class:`~data_scripts.readers.Corpus` with ``train`` / ``validation`` (/ ``test``)
splits."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .features import default_data_dir
from .readers import (
    Corpus,
    ReadOptions,
    is_token_json,
    read_cluener,
    read_cluener_files,
    read_column_files,
    read_hf_dataset,
    read_peoples_daily_1998,
    read_token_json_files,
)
from .sample import SAMPLE_DIR

CORPORA = ("sample", "cluener", "msra", "peoples_daily")


def carve_validation(corpus: Corpus, ratio: float, seed: int) -> Corpus:
    """Hold out ``ratio`` of ``train`` as ``validation`` (seeded) when a corpus has no dev split."""
    if "validation" in corpus or ratio <= 0:
        return corpus
    parts = corpus["train"].train_test_split(test_size=ratio, seed=seed, shuffle=True)
    splits = {
        "train": parts["train"],
        "validation": parts["test"],
        **{k: v for k, v in corpus.items() if k != "train"},
    }
    return corpus.with_splits(
        splits, f"no dev split: {len(parts['test'])} train sentences ({ratio:.0%}, seed {seed}) held out as validation"
    )


def _dev_as_validation(corpus: Corpus) -> Corpus:
    return corpus.with_splits({"validation" if k == "dev" else k: v for k, v in corpus.items()})


def load_corpus(
    name: str,
    data_dir: str | Path | None = None,
    scheme: str = "BIOS",
    max_chars: int = 62,
    source_scheme: str | None = None,
    validation_ratio: float = 0.05,
    seed: int = 42,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    options: ReadOptions | None = None,
    dataset_name: str | None = None,
) -> Corpus:
    """Load a corpus by name (``sample``, ``cluener``, ``msra``, ``peoples_daily``), or from files.

    ``name`` may also be a folder of CLUENER ``{train,dev,test}.json`` files, or ``files`` with
    ``train_file`` / ``validation_file`` / ``test_file`` (CLUENER ``.json``, ``tokens``/``ner_tags``
    JSON or JSON lines, or column files). ``dataset_name``: a ``datasets`` dataset (a
    ``save_to_disk`` folder or a Hub id) instead. Sentences longer than ``max_chars`` are split at
    punctuation without cutting an entity. ``options``: :class:`~data_scripts.readers.ReadOptions`.
    """
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    if dataset_name:
        dsd = read_hf_dataset(dataset_name, source_scheme, scheme, max_chars=max_chars, options=options)
    elif name == "sample":
        dsd = _dev_as_validation(read_cluener(SAMPLE_DIR, scheme, max_chars=max_chars))
    elif name == "cluener":
        dsd = _dev_as_validation(read_cluener(data_dir / "cluener", scheme, max_chars=max_chars))
    elif name == "msra":
        files = {"train": data_dir / "msra" / "train.bio", "test": data_dir / "msra" / "test.bio"}
        dsd = read_column_files(files, source_scheme or "BIO", scheme, max_chars=max_chars, options=options)
    elif name == "peoples_daily":
        dsd = read_peoples_daily_1998(
            data_dir / "peoples_daily_1998" / "199801.txt", scheme, max_chars=max_chars, seed=seed
        )
    elif name == "files" or train_file:
        files = {k: v for k, v in (("train", train_file), ("validation", validation_file), ("test", test_file)) if v}
        if "train" not in files:
            raise UserError("--dataset files needs --train_file")
        if all(str(f).endswith((".json", ".jsonl")) for f in files.values()):
            if is_token_json(files["train"]):
                dsd = read_token_json_files(files, source_scheme, scheme, max_chars=max_chars, options=options)
            else:
                dsd = read_cluener_files(files, scheme, max_chars=max_chars)
        else:
            dsd = read_column_files(files, source_scheme, scheme, max_chars=max_chars, options=options)
    elif Path(name).is_dir() and (Path(name) / "train.json").exists():
        dsd = _dev_as_validation(read_cluener(name, scheme, max_chars=max_chars))
    else:
        raise UserError(
            f"unknown dataset {name!r}: use one of {', '.join(CORPORA)}, a folder with CLUENER train.json/dev.json, "
            "or 'files' with --train_file/--validation_file/--test_file"
        )
    return carve_validation(dsd, validation_ratio, seed)
