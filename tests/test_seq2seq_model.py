"""Seq2SeqAttnTagger: teacher forcing, decoding (greedy, beam, constraints), training, save and load."""

import itertools
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForTokenClassification, BertTokenizerFast

from conftest import run_fresh_process, run_train, write_cluener_slice
from modeling.tag_schemes import SCHEMES, TagSequenceError, label_list, tags_to_spans
from modeling import Seq2SeqAttnConfig, Seq2SeqAttnTagger
from modeling.configuration_seq2seq_ner import ATTENTION_SCORES
from modeling.crf import character_mask
from modeling.tag_constraints import transition_masks

LABELS = label_list(["LOC", "PER"], "BIEO")  # O, B-LOC, I-LOC, E-LOC, B-PER, I-PER, E-PER
TEXTS = ["张三在北京大学读书。", "上海是一座城市"]


def tiny_model(seed: int = 0, **overrides) -> Seq2SeqAttnTagger:
    torch.manual_seed(seed)
    kwargs = {
        "id2label": dict(enumerate(LABELS)),
        "label2id": {l: i for i, l in enumerate(LABELS)},
        "vocab_size": 60,
        "char_embedding_size": 16,
        "lstm_hidden_size": 16,
        "decoder_hidden_size": 32,
        "tag_embedding_size": 8,
        **overrides,
    }
    return Seq2SeqAttnTagger(Seq2SeqAttnConfig(**kwargs)).eval()


def toy_batch(seed: int = 0, lengths=(6, 4, 1)):
    """``[CLS] chars [SEP]`` inputs of these lengths, padded, with random tag ids as labels."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths) + 2
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for b, n in enumerate(lengths):
        ids[b, 0], ids[b, n + 1] = 1, 2
        ids[b, 1 : n + 1] = torch.randint(3, 60, (n,), generator=g)
        mask[b, : n + 2] = 1
        labels[b, 1 : n + 1] = torch.randint(0, len(LABELS), (n,), generator=g)
    return ids, mask, labels


def test_transition_masks_accept_exactly_the_valid_sequences():
    """For every scheme, a sequence passes the decoding constraints iff the strict reader accepts it."""
    for scheme in SCHEMES:
        labels = label_list(["A", "B"], scheme)
        allowed, can_end = transition_masks(dict(enumerate(labels)), scheme)
        start = len(labels)
        for n in (1, 2, 3):
            for seq in itertools.product(range(len(labels)), repeat=n):
                ok = bool(allowed[start, seq[0]] and can_end[seq[-1]]) and all(
                    bool(allowed[a, b]) for a, b in zip(seq, seq[1:])
                )
                try:
                    tags_to_spans([labels[k] for k in seq], scheme, strict=True)
                    valid = True
                except TagSequenceError:
                    valid = False
                assert ok == valid, (scheme, [labels[k] for k in seq])


def test_teacher_forcing_feeds_the_gold_labels_shifted_by_one():
    model = tiny_model().train()
    ids, mask, labels = toy_batch()
    fed = []
    hook = model.tag_embeddings.register_forward_hook(lambda module, args, out: fed.append(args[0].clone()))
    model(ids, attention_mask=mask, labels=labels)
    hook.remove()
    fed = torch.stack(fed, dim=1)  # [batch, steps]: what step i was given as y_{i-1}
    go = model.go_id
    for b, n in enumerate([6, 4, 1]):
        assert fed[b, 0] == go
        assert fed[b, 1:n].tolist() == labels[b, 1:n].tolist()  # step i gets the gold tag of character i-1


def test_scheduled_sampling_feeds_the_decoders_own_choices():
    """p = 1: every step after the first is fed the previous step's greedy choice, so training logits
    equal greedy decoding's and do not depend on the gold tags; 0 < p < 1 mixes gold and own choices."""
    ids, mask, labels = toy_batch(seed=5, lengths=(7, 5, 2))
    chars = character_mask(mask)
    model = tiny_model(seed=6, scheduled_sampling_prob=1.0, hidden_dropout_prob=0.0).train()
    other = labels.masked_fill(labels >= 0, LABELS.index("E-PER"))  # E-PER after E-PER: a history decoding never takes
    with torch.no_grad():
        out, out_other = model(ids, attention_mask=mask, labels=labels), model(ids, attention_mask=mask, labels=other)
        greedy_tags, greedy_logits = model.generate_tags(ids, mask, num_beams=1)
        assert torch.allclose(out.logits[chars], greedy_logits[chars], atol=1e-6)
        assert torch.equal(out.logits, out_other.logits)
        assert not torch.equal(out.loss, out_other.loss)

        model.config.scheduled_sampling_prob = 0.5
        fed = []
        hook = model.tag_embeddings.register_forward_hook(lambda module, args, out: fed.append(args[0].clone()))
        torch.manual_seed(0)
        model(ids, attention_mask=mask, labels=other)
        hook.remove()
    fed = torch.stack(fed, dim=1)[:, 1:]  # what steps 2.. were given
    prev_chars = chars[:, 1:-1][:, :-1] & chars[:, 2:-1] if chars.shape[1] > 3 else chars[:, 1:2]
    from_gold = (fed == other[:, 1:-2])[prev_chars]
    assert 0 < int(from_gold.sum()) < int(prev_chars.sum())  # some steps read the gold tag, some their own choice

    model.eval()  # evaluation is pure teacher forcing whatever p: the loss stays the paper's
    with torch.no_grad():
        tf_logits, _ = model.teacher_forced_logits(model.encode(ids, mask), mask, labels)
        model.config.scheduled_sampling_prob = 0.0
        assert torch.equal(tf_logits, model.teacher_forced_logits(model.encode(ids, mask), mask, labels)[0])


def test_inference_never_reads_the_gold_labels():
    model = tiny_model()
    ids, mask, labels = toy_batch()
    other = labels.clone()
    other[other >= 0] = (other[other >= 0] + 3) % len(LABELS)
    with torch.no_grad():
        a = model(ids, attention_mask=mask, labels=labels)
        b = model(ids, attention_mask=mask, labels=other)
        c = model(ids, attention_mask=mask)
    assert torch.equal(a.tags, b.tags) and torch.equal(a.tags, c.tags)
    assert torch.equal(a.logits, b.logits)  # the returned scores follow the decoded tags, not the gold ones
    assert not torch.equal(a.loss, b.loss)  # the loss does read them
    assert (a.tags[mask == 0] == -100).all() and (a.tags[:, 0] == -100).all()


@pytest.mark.parametrize("score", ATTENTION_SCORES)
def test_beam_width_one_equals_greedy(score):
    model = tiny_model(seed=1, attention_score=score)
    ids, mask, _ = toy_batch(seed=2, lengths=(7, 3, 5, 1))
    with torch.no_grad():
        hidden, num_chars, steps = model.encode(ids, mask), mask.sum(1) - 2, ids.shape[1] - 2
        greedy, greedy_logits = model.greedy_decode(hidden, mask, num_chars, steps)
        beam, beam_logits = model.beam_search(hidden, mask, num_chars, steps, 1)
    chars = character_mask(mask)[:, 1:-1]
    assert torch.equal(greedy[chars], beam[chars])
    assert torch.allclose(greedy_logits[chars], beam_logits[chars], atol=1e-6)
    assert not torch.equal(model.generate_tags(ids, mask, num_beams=1)[0], torch.full_like(ids, -100))


@pytest.mark.parametrize("feed_encoder_state", [True, False])
def test_teacher_forcing_on_the_greedy_tags_replays_greedy_decoding(feed_encoder_state):
    """Fed the decoder's own greedy tags, teacher forcing takes the same steps: the same scores, and
    attention weights (eq. 7) that sum to 1 over each sentence's tokens and are 0 on padding."""
    model = tiny_model(seed=7, feed_encoder_state=feed_encoder_state)
    ids, mask, _ = toy_batch(seed=8, lengths=(6, 3, 1))
    with torch.no_grad():
        tags, greedy_logits = model.generate_tags(ids, mask, num_beams=1)
        logits, attention = model.teacher_forced_logits(model.encode(ids, mask), mask, tags, output_attentions=True)
    chars = character_mask(mask)[:, 1:-1]
    assert torch.allclose(logits[chars], greedy_logits[:, 1:-1][chars], atol=1e-6)
    assert attention.shape == (3, ids.shape[1] - 2, ids.shape[1])
    assert torch.allclose(attention[chars].sum(-1), torch.ones(int(chars.sum())))
    assert (attention.masked_select(~mask.bool()[:, None, :].expand_as(attention)) == 0).all()
    c = model.config  # the decoder of eqs. 9-10 as written reads y_{i-1} and c_i only; the default adds h_i
    assert model.decoder.input_size == c.tag_embedding_size + c.attention_size + (
        2 * c.lstm_hidden_size if feed_encoder_state else 0
    )


@torch.no_grad()
def sequence_log_prob(model, ids, mask, tags) -> float:
    """log p(tags | input) under the decoder, scored with teacher forcing."""
    labels = torch.full_like(ids, -100)
    labels[0, 1 : 1 + len(tags)] = torch.tensor(tags)
    hidden = model.encode(ids, mask)
    logits, _ = model.teacher_forced_logits(hidden, mask, labels)
    return float(torch.log_softmax(logits[0], -1)[torch.arange(len(tags)), torch.tensor(tags)].sum())


def test_a_wide_beam_finds_the_most_probable_valid_sequence():
    """With a beam as wide as the search space, beam search is exhaustive: it must return the argmax."""
    model = tiny_model(seed=3)
    ids, mask, _ = toy_batch(seed=4, lengths=(3,))
    allowed, can_end = transition_masks(model.config.id2label, "BIEO")
    valid = [
        s
        for s in itertools.product(range(len(LABELS)), repeat=3)
        if allowed[len(LABELS), s[0]] and can_end[s[-1]] and all(allowed[a, b] for a, b in zip(s, s[1:]))
    ]
    with torch.no_grad():
        best = max(valid, key=lambda s: sequence_log_prob(model, ids, mask, list(s)))
        tags, _ = model.generate_tags(ids, mask, num_beams=len(LABELS) ** 3)
        beam4, _ = model.generate_tags(ids, mask, num_beams=4)
    assert tags[0, 1:4].tolist() == list(best)
    assert (
        sequence_log_prob(model, ids, mask, beam4[0, 1:4].tolist())
        <= sequence_log_prob(model, ids, mask, list(best)) + 1e-6
    )


def test_auto_classes_build_the_seq2seq_tagger():
    config = AutoConfig.for_model(
        "seq2seq_attn_ner", id2label=dict(enumerate(LABELS)), vocab_size=60, char_embedding_size=8, lstm_hidden_size=8
    )
    model = AutoModelForTokenClassification.from_config(config)
    assert isinstance(model, Seq2SeqAttnTagger) and model.config.tag_scheme == "BIEO" and model.config.num_beams == 1
    with pytest.raises(ValueError, match="dot score needs"):
        Seq2SeqAttnConfig(attention_score="dot", lstm_hidden_size=8, decoder_hidden_size=32)
    with pytest.raises(ValueError, match="labels must be tag ids"):
        ids, mask, labels = toy_batch()
        tiny_model()(ids, attention_mask=mask, labels=labels.masked_fill(labels == 0, 99))


# training through train.py on a slice of the real data

SEQ2SEQ = [
    "--model_type", "seq2seq", "--learning_rate", "1e-2", "--per_device_train_batch_size", "8",
    "--hidden_dropout_prob", "0.1", "--save_strategy", "no", "--eval_strategy", "no", "--load_best_model_at_end",
    "false", "--seed", "1",
]  # scored once, after training; overfitting wants little dropout  # fmt: skip


@pytest.fixture(scope="module")
def slice32(data_dir, tmp_path_factory):
    return write_cluener_slice(data_dir / "cluener" / "train.json", tmp_path_factory.mktemp("s32") / "train.json", 32)


@pytest.fixture(scope="module")
def seq2seq_bilstm(slice32, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq2seq-bilstm")
    args = [
        "--dataset", "files", "--train_file", str(slice32), "--validation_file", str(slice32),
        "--output_dir", str(out), "--num_train_epochs", "20", *SEQ2SEQ,
    ]  # fmt: skip
    return out, run_train(args)


@pytest.fixture(scope="module")
def seq2seq_bert(slice32, tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq2seq-bert")
    args = [
        "--dataset", "files", "--train_file", str(slice32), "--validation_file", str(slice32),
        "--output_dir", str(out), "--encoder", str(tiny_bert_dir), "--encoder_learning_rate", "5e-3",
        "--num_train_epochs", "25", *SEQ2SEQ,
    ]  # fmt: skip
    return out, run_train(args)


def test_overfit_32_sentences_char_encoder(seq2seq_bilstm):
    out, results = seq2seq_bilstm
    assert results["validation_f1"] >= 0.95, results["validation_f1"]
    config = json.loads((out / "config.json").read_text())
    assert (
        config["model_type"] == "seq2seq_attn_ner"
        and config["tag_scheme"] == "BIEO"
        and config["lstm_hidden_size"] == 128
    )


def test_overfit_32_sentences_tiny_bert(seq2seq_bert):
    out, results = seq2seq_bert
    assert results["validation_f1"] >= 0.95, results["validation_f1"]
    assert json.loads((out / "config.json").read_text())["encoder_config"]["hidden_size"] == 64


def test_trained_model_writes_only_valid_bieo(seq2seq_bilstm, data_dir):
    """Greedy and beam output on unseen sentences is always a well-formed BIEO sequence."""
    folder, _ = seq2seq_bilstm
    model = Seq2SeqAttnTagger.from_pretrained(folder)
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    texts = [
        json.loads(line)["text"]
        for line in (data_dir / "cluener" / "dev.json").read_text(encoding="utf-8").splitlines()[:64]
    ]
    for beams in (1, 3):
        tagged = model.predict_tags(texts, tokenizer, num_beams=beams)
        assert [len(t) for t in tagged] == [len(t) for t in texts]
        for tags in tagged:
            tags_to_spans(tags, "BIEO", strict=True)  # raises on e.g. O I-PER or B-PER E-LOC
        assert sum(t != "O" for tags in tagged for t in tags) > 0


FRESH = """
import json, sys
from transformers import AutoModelForTokenClassification, AutoTokenizer
folder, texts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
greedy, beam = model.predict_tags(texts, tokenizer), model.predict_tags(texts, tokenizer, num_beams=4)
print(json.dumps({"class": type(model).__name__, "module": type(model).__module__, "greedy": greedy, "beam": beam}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("which", ["seq2seq_bilstm", "seq2seq_bert"])
def test_save_then_load_in_a_fresh_offline_process(which, request, tmp_path):
    folder, _ = request.getfixturevalue(which)
    model = Seq2SeqAttnTagger.from_pretrained(folder)
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    expected = {
        "greedy": model.predict_tags(TEXTS, tokenizer),
        "beam": model.predict_tags(TEXTS, tokenizer, num_beams=4),
    }
    lines = run_fresh_process(FRESH, str(folder), json.dumps(TEXTS), cwd=tmp_path)
    got = json.loads(lines[-1])
    assert got["class"] == "Seq2SeqAttnTagger" and got["module"].startswith("transformers_modules")
    assert got["greedy"] == expected["greedy"] and got["beam"] == expected["beam"]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_untrained_model_decodes_only_valid_bieo_unless_constraints_are_off(num_beams):
    """An untrained decoder's free choices are mostly invalid BIEO (I- after O, E- of another type, an open
    B- at the end); the constrained decoder must never write one, and with constraints off it must."""
    ids, mask, _ = toy_batch(seed=1, lengths=(12, 9, 7, 5, 3, 1))
    invalid = {}
    for constrained in (True, False):
        model = tiny_model(seed=2, constrained_decoding=constrained)
        with torch.no_grad():
            g = torch.Generator().manual_seed(3)
            for p in model.parameters():  # large random weights: peaked, arbitrary choices at every step
                p.copy_(torch.randn(p.shape, generator=g))
            tags = model(ids, attention_mask=mask, num_beams=num_beams).tags
        invalid[constrained] = 0
        for row, m in zip(tags, mask):
            names = [LABELS[int(t)] for t in row[1 : int(m.sum()) - 1]]
            try:
                tags_to_spans(names, "BIEO")
            except TagSequenceError:
                invalid[constrained] += 1
    assert invalid[True] == 0
    assert invalid[False] > 0, (
        "the unconstrained untrained decoder happened to write only valid sequences: the test shows nothing"
    )


@pytest.mark.parametrize("num_beams", [1, 3])
def test_score_is_the_decoders_probability_of_its_own_tag_given_its_previous_tags(num_beams):
    """The pipeline's ``score`` for the seq2seq tagger: p(y_i | y_<i, x) of the decoded tag, which
    teacher forcing on the decoded sequence computes independently of the decoding loop."""
    model = tiny_model(seed=4)
    ids, mask, _ = toy_batch(seed=5, lengths=(8, 5, 2))
    with torch.no_grad():
        out = model(ids, attention_mask=mask, return_tags=True, num_beams=num_beams)
        scores = model.tag_probabilities(out.logits, mask).gather(-1, out.tags.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        forced, _ = model.teacher_forced_logits(model.encode(ids, mask), mask, out.tags)
    chars = character_mask(mask)[:, 1:-1]
    expected = forced.softmax(-1).gather(-1, out.tags[:, 1:-1].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(scores[:, 1:-1][chars], expected[chars], atol=1e-5)
    assert ((expected[chars] > 0) & (expected[chars] <= 1)).all()


def test_a_folder_saved_with_the_old_parameter_names_loads_and_is_saved_with_todays(tmp_path):
    """Commit c68bd23 named the char table ``encoder`` and the BiLSTM ``bilstm``; today both live in ``encoder``
    (``encoder.embeddings``, ``encoder.lstm``), as in the memory network. The fixture is a tiny model saved by that
    commit with its outputs on two inputs."""
    folder = Path(__file__).parent / "fixtures" / "seq2seq-c68bd23"
    expected = json.loads((folder / "expected.json").read_text())
    inputs = {k: torch.tensor(expected[k]) for k in ("input_ids", "attention_mask")}
    model = Seq2SeqAttnTagger.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, torch.tensor(expected["logits"]), atol=1e-6)
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "encoder.embeddings.weight" in keys and "encoder.lstm.weight_ih_l0" in keys
    assert not any(k.startswith("bilstm.") or k == "encoder.weight" for k in keys)
    again = Seq2SeqAttnTagger.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(again(**inputs).logits, torch.tensor(expected["logits"]), atol=1e-6)
