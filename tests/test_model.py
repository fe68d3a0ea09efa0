"""CRF pitfalls, overfitting small slices of CLUENER, save -> fresh offline process, resume, torchrun."""

import itertools
import json
import sys
import textwrap

import pytest
import torch
from transformers import BertModel, BertTokenizerFast

from conftest import ROOT, run_fresh_process, run_train, write_cluener_slice
from modeling import MemoryNetConfig, MemoryNetForTokenClassification

TEXTS = [
    "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。",
    "我在北京 iPhone 15 发布会上见到了张三😀",
    "",
]


def tiny_model(num_labels=5, **kw):
    """A tiny BiLSTM-CRF (no memory, no self-attention unless ``kw`` says otherwise)."""
    kw = {"num_memory": 0, "use_self_attention": False, **kw}
    torch.manual_seed(0)
    config = MemoryNetConfig(
        id2label={i: f"L{i}" for i in range(num_labels)},
        vocab_size=50,
        char_embedding_size=8,
        lstm_hidden_size=8,
        **kw,
    )
    return MemoryNetForTokenClassification(config)


def batch():
    input_ids = torch.tensor([[2, 7, 8, 9, 3], [2, 7, 3, 0, 0], [2, 3, 0, 0, 0]])  # the last input has no character
    attention_mask = (input_ids != 0).long()
    labels = torch.tensor([[-100, 1, 2, 0, -100], [-100, 4, -100, -100, -100], [-100, -100, -100, -100, -100]])
    return input_ids, attention_mask, labels


def test_crf_loss_and_viterbi_handle_specials_padding_and_empty_input():
    model = tiny_model()
    input_ids, attention_mask, labels = batch()
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    model.eval()
    out = model(input_ids, attention_mask=attention_mask)
    assert out.loss is None  # no labels, no loss
    assert out.logits.shape == (3, 5, 5)
    assert out.tags.shape == (3, 5)
    assert (out.tags[labels == -100] == -100).all() and (out.tags[labels != -100] >= 0).all()
    assert [len(t) for t in model.decode(input_ids, attention_mask)] == [3, 1, 0]


def test_crf_rejects_bad_labels_with_a_clear_error():
    model = tiny_model()
    input_ids, attention_mask, labels = batch()
    holes = labels.clone()
    holes[0, 2] = -100
    with pytest.raises(ValueError, match="-100 at character positions"):
        model(input_ids, attention_mask=attention_mask, labels=holes)
    too_big = labels.clone()
    too_big[0, 1] = 9
    with pytest.raises(ValueError, match=r"tag ids in \[0, 5\)"):
        model(input_ids, attention_mask=attention_mask, labels=too_big)


def test_crf_marginals_equal_summing_over_every_tag_sequence():
    """p(y_i = k | x) from CRFHead.marginals vs exp(-NLL) of every complete tag sequence, summed by hand."""
    model = tiny_model(num_labels=4)
    crf = model.crf
    with torch.no_grad():
        for p in (crf.crf.transitions, crf.crf.start_transitions, crf.crf.end_transitions):
            p.copy_(torch.randn_like(p))
    input_ids, attention_mask, _ = batch()
    emissions = 2 * torch.randn(3, 5, 4)
    marginals = crf.marginals(emissions, attention_mask)
    assert marginals.shape == (3, 5, 4)
    for row, n in enumerate([3, 1, 0]):
        expected = torch.zeros(5, 4)
        for seq in itertools.product(range(4), repeat=n):
            labels = torch.full((1, 5), -100)
            labels[0, 1 : n + 1] = torch.tensor(seq, dtype=torch.long)
            with torch.no_grad():
                prob = torch.exp(-crf(emissions[row : row + 1], attention_mask[row : row + 1], labels))
            for i, tag in enumerate(seq):
                expected[1 + i, tag] += prob
        torch.testing.assert_close(marginals[row], expected, atol=1e-5, rtol=1e-4)
    assert torch.allclose(marginals[0, 1:4].sum(-1), torch.ones(3)) and (marginals[2] == 0).all()
    # the memory network reports them as its tag probabilities (the pipeline's entity scores)
    assert torch.equal(model.tag_probabilities(emissions, attention_mask), marginals)


def ragged_batch(batch_size=17, length=30, num_tags=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, length + 1, (batch_size,), generator=g)
    lengths[0], lengths[1] = 2, length  # no character at all; the full width
    attention_mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return 4 * torch.randn(batch_size, length, num_tags, generator=g), attention_mask


@pytest.mark.parametrize("ties", [False, True])
def test_batched_viterbi_gives_pytorch_crf_paths(ties):
    """CRFHead.decode (the recursion and the back-trace over the whole batch) returns exactly the paths of
    pytorch-crf's decode, ties included (integer scores), -100 off characters."""
    crf = tiny_model(num_labels=7).crf
    emissions, attention_mask = ragged_batch()
    with torch.no_grad():
        for p in (crf.crf.transitions, crf.crf.start_transitions, crf.crf.end_transitions):
            p.copy_(torch.zeros_like(p) if ties else torch.randn_like(p))
    if ties:
        emissions = emissions.gt(0).float()
    em, mask, char_mask = crf.crf_inputs(emissions, attention_mask)
    reference = crf.crf.decode(em, mask=mask)
    tags = crf.decode(emissions, attention_mask)
    for row in range(len(tags)):
        n = int(char_mask[row].sum())
        assert tags[row, 1 : n + 1].tolist() == reference[row][:n]
        assert (tags[row, n + 1 :] == -100).all() and tags[row, 0] == -100


def test_crf_marginals_equal_the_log_space_gradient_and_fall_back_when_a_step_underflows():
    crf = tiny_model(num_labels=7).crf
    emissions, attention_mask = ragged_batch(num_tags=7)
    with torch.no_grad():
        for p in (crf.crf.transitions, crf.crf.start_transitions, crf.crf.end_transitions):
            p.copy_(2 * torch.randn_like(p))
    torch.testing.assert_close(
        crf.marginals(emissions, attention_mask), crf.log_space_marginals(emissions, attention_mask), atol=2e-4, rtol=0
    )
    # transitions 300 apart underflow in probability space: the log-space result comes back instead
    with torch.no_grad():
        crf.crf.transitions.fill_(-300.0)
        crf.crf.transitions[0, 1] = 0.0
    emissions[:, :, 1] = -300.0
    marginals = crf.marginals(emissions, attention_mask)
    assert torch.isfinite(marginals).all()
    torch.testing.assert_close(marginals, crf.log_space_marginals(emissions, attention_mask))


def test_crf_runs_in_float32_under_autocast():
    model = tiny_model()
    input_ids, attention_mask, labels = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids, attention_mask=attention_mask, labels=labels).loss
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_bilstm_skips_packing_only_when_no_row_is_padded(monkeypatch):
    """One window (the pipeline at batch 1) has no padding: the LSTM reads it unpacked, with the packed result.
    A padded batch is packed in training."""
    from torch import nn

    from modeling.encoders import run_lstm

    torch.manual_seed(0)
    lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True).eval()
    x = torch.randn(3, 7, 6)
    full, ragged = torch.ones(3, 7, dtype=torch.long), torch.ones(3, 7, dtype=torch.long)
    ragged[1, 4:] = 0
    with torch.no_grad():
        packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([7, 7, 7]), batch_first=True, enforce_sorted=False)
        expected = nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True)[0]
        packs = []
        pack = nn.utils.rnn.pack_padded_sequence
        monkeypatch.setattr(nn.utils.rnn, "pack_padded_sequence", lambda *a, **k: packs.append(1) or pack(*a, **k))
        assert torch.equal(run_lstm(lstm, x, full), expected) and packs == []
        out = run_lstm(lstm.train(), x, ragged)
    assert packs == [1] and torch.equal(out[1, 4:], torch.zeros(3, 10))


def packed_lstm_and_pack_counter(lstm, x, lengths, monkeypatch):
    """The packed LSTM's outputs for ``lengths``, and a list that records every later ``pack_padded_sequence``."""
    from torch import nn

    with torch.no_grad():
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        expected = nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]
    packs = []
    pack = nn.utils.rnn.pack_padded_sequence
    monkeypatch.setattr(nn.utils.rnn, "pack_padded_sequence", lambda *a, **k: packs.append(1) or pack(*a, **k))
    return expected, packs


@pytest.mark.parametrize("num_layers, bias", [(1, True), (2, True), (1, False)])
def test_bilstm_inference_by_direction_gives_the_packed_result(num_layers, bias, monkeypatch):
    """Inference on a well-filled batch runs each direction unpacked, the backward one on rows reversed within
    their lengths: the outputs are those of the packed LSTM at every character and zeros at padding."""
    from torch import nn

    from modeling.encoders import run_lstm

    torch.manual_seed(0)
    lstm = nn.LSTM(6, 5, num_layers=num_layers, bias=bias, batch_first=True, bidirectional=True).eval()
    x = torch.randn(4, 9, 6)
    lengths = torch.tensor([9, 8, 1, 9])  # 75% filled
    mask = (torch.arange(9)[None, :] < lengths[:, None]).long()
    expected, packs = packed_lstm_and_pack_counter(lstm, x, lengths, monkeypatch)
    with torch.no_grad():
        out = run_lstm(lstm, x, mask)
    assert packs == []
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert torch.equal(out[2, 1:], torch.zeros(8, 10))


@pytest.mark.parametrize("threads, packed", [(1, True), (2, False)])
def test_bilstm_packs_a_sparse_batch_only_on_one_thread(threads, packed, monkeypatch):
    """Mostly padding: one thread packs it (the unpacked run would compute the padding), two threads do not (the
    packed kernel does not use the second); the outputs are the same."""
    from torch import nn

    from modeling.encoders import run_lstm

    torch.manual_seed(0)
    lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True).eval()
    x = torch.randn(4, 9, 6)
    lengths = torch.tensor([9, 2, 1, 3])  # 42% filled
    mask = (torch.arange(9)[None, :] < lengths[:, None]).long()
    expected, packs = packed_lstm_and_pack_counter(lstm, x, lengths, monkeypatch)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            out = run_lstm(lstm, x, mask)
    finally:
        torch.set_num_threads(before)
    assert packs == ([1] if packed else [])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_self_attention_option():
    model = tiny_model(use_self_attention=True, self_attention_size=16, num_attention_heads=2)
    input_ids, attention_mask, labels = batch()
    out = model(input_ids, attention_mask=attention_mask, labels=labels, output_attentions=True)
    assert out.attentions[0].shape == (3, 2, 5, 5)
    assert torch.allclose(out.attentions[0][1, :, :, 3:], torch.zeros(1))  # padding gets no attention


def test_self_attention_without_weights_matches_multihead_attention():
    """Tagging (eval, no weights asked for) takes the projection + scaled_dot_product_attention path; it must
    give what nn.MultiheadAttention gives, padding included."""
    from modeling.modeling_memory_ner import SelfAttentionBlock

    torch.manual_seed(0)
    block = SelfAttentionBlock(12, 16, 4, dropout=0.1).eval()
    features = torch.randn(3, 6, 12)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5])
    fast, none = block(features, mask)
    reference, weights = block(features, mask, need_weights=True)
    assert none is None and weights.shape == (3, 4, 6, 6)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)
    calls = []
    block.attention.register_forward_hook(lambda *args: calls.append(1))
    block(features, mask)
    assert calls == []  # the fast path ran


# ---------------------------------------------------------------------------------------------
# training through train.py on slices of the real data

BASELINE = ["--num_memory", "0", "--use_self_attention", "false"]  # the plain encoder-CRF
OVERFIT = [
    *BASELINE, "--learning_rate", "5e-3", "--per_device_train_batch_size", "8", "--save_strategy", "no",
    "--eval_strategy", "no", "--load_best_model_at_end", "false", "--seed", "1",
]  # scored once, after training  # fmt: skip


@pytest.fixture(scope="module")
def slice32(data_dir, tmp_path_factory):
    return write_cluener_slice(data_dir / "cluener" / "train.json", tmp_path_factory.mktemp("c32") / "train.json", 32)


@pytest.fixture(scope="module")
def overfit_bilstm(slice32, tmp_path_factory):
    out = tmp_path_factory.mktemp("bilstm")
    args = [
        "--dataset", "files", "--train_file", str(slice32), "--validation_file", str(slice32),
        "--output_dir", str(out), "--num_train_epochs", "30", *OVERFIT,
    ]  # fmt: skip
    return out, run_train(args)


@pytest.fixture(scope="module")
def overfit_bert(slice32, tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bert")
    args = [
        "--dataset", "files", "--train_file", str(slice32), "--validation_file", str(slice32),
        "--output_dir", str(out), "--encoder", str(tiny_bert_dir), "--encoder_learning_rate", "5e-3",
        "--num_train_epochs", "40", *OVERFIT,
    ]  # fmt: skip
    return out, run_train(args)


def test_overfit_32_sentences_bilstm(overfit_bilstm):
    _, results = overfit_bilstm
    assert results["validation_f1"] >= 0.95, results["validation_f1"]
    assert "micro avg" in results["_stdout"] and "organization" in results["_stdout"]  # the per-type report is printed


def test_overfit_32_sentences_tiny_bert_from_a_local_folder(overfit_bert):
    out, results = overfit_bert
    assert results["validation_f1"] >= 0.95, results["validation_f1"]
    config = json.loads((out / "config.json").read_text())
    assert config["encoder_type"] == "transformers" and config["encoder_config"]["model_type"] == "bert"
    assert config["encoder_config"]["hidden_size"] == 64


FRESH = textwrap.dedent(
    """
    import json, sys
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    tags = model.predict_tags(texts, tokenizer)
    print(json.dumps({"class": type(model).__name__, "module": type(model).__module__, "tags": tags}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["overfit_bilstm", "overfit_bert"])
def test_save_then_load_in_a_fresh_offline_process(which, request, tmp_path):
    folder, _ = request.getfixturevalue(which)
    model = MemoryNetForTokenClassification.from_pretrained(folder)
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    expected = model.predict_tags(TEXTS, tokenizer)
    assert [len(t) for t in expected] == [len(t) for t in TEXTS]
    assert any(tag != "O" for tag in expected[0])  # the trained model tags the training sentence
    # run outside the repo, so only the code saved in the folder can be used
    lines = run_fresh_process(FRESH, str(folder), json.dumps(TEXTS), cwd=tmp_path)
    got = json.loads(lines[-1])
    assert got["class"] == "MemoryNetForTokenClassification" and got["module"].startswith("transformers_modules")
    assert got["tags"] == expected


@pytest.mark.slow
def test_torchrun_two_cpu_processes_with_memory_and_group_by_length(tmp_path):
    """The memory network with category retrieval (n=4; its type-classifier fits too) under CPU DDP, batches
    grouped by length (v5 spelling of `group_by_length`). Each process prepares its memories by itself:
    train.py compares them across processes, and they agree."""
    out = tmp_path / "ddp"
    results = run_train(
        [
            "--num_train_epochs", "1", "--memory_method", "category", "--type_classifier_epochs", "1",
            "--type_classifier_folds", "2", "--max_train_samples", "96", "--max_eval_samples", "32",
            "--train_sampling_strategy", "group_by_length", "--output_dir", str(out),
        ],
        launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"],
        threads=1,
    )  # fmt: skip
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 96 // (16 * 2)  # the 96 sentences were shared by 2 processes
    assert "validation_f1" in results and (out / "model.safetensors").exists()
    assert results["memory"]["num_memory"] == 4 and results["memory"]["method"] == "category"
    assert "type_classifier_validation" in results
    assert "memories: the same bank, type classifier and memory ids in all 2 processes" in results["_stderr"]


def test_encoder_and_head_learning_rates(tiny_bert_dir):
    sys.path.insert(0, str(ROOT))
    from train import NERTrainingArguments, build_optimizer

    model = MemoryNetForTokenClassification.from_encoder_pretrained(str(tiny_bert_dir), id2label={0: "O", 1: "S-X"})
    args = NERTrainingArguments(output_dir="unused", learning_rate=2e-4)
    optimizer = build_optimizer(model, args, encoder_lr=3e-5)
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    for group in optimizer.param_groups:
        in_encoder = {id(p) in encoder_ids for p in group["params"]}
        assert len(in_encoder) == 1
        assert group["lr"] == (3e-5 if in_encoder.pop() else 2e-4)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    # the pretrained weights were loaded, not re-initialised
    reference = BertModel.from_pretrained(tiny_bert_dir)
    assert torch.equal(
        model.encoder.model.embeddings.word_embeddings.weight, reference.embeddings.word_embeddings.weight
    )


@pytest.mark.slow
def test_training_seed_does_not_move_the_data_split(monkeypatch, tmp_path):
    """--seed changes initialisation and batch order only: People's Daily's 80/20 split and the
    held-out share of train come from --split_seed, so runs with different seeds share a test set."""
    import train

    seen = []

    def fake_load_corpus(name, data_dir, scheme, max_chars, source_scheme, validation_ratio, seed, *files):
        seen.append(seed)
        raise KeyboardInterrupt  # stop main() here

    monkeypatch.setattr(train, "load_corpus", fake_load_corpus)
    for argv, expected in ((["--seed", "7"], 42), (["--seed", "7", "--split_seed", "3"], 3)):
        monkeypatch.setattr(
            sys, "argv", ["train.py", "--dataset", "peoples_daily", "--output_dir", str(tmp_path), *argv]
        )
        with pytest.raises(KeyboardInterrupt):
            train.main()
    assert seen == [42, 3]
