"""The Gradio Space on 127.0.0.1 with a small trained memory model: a real browser, bad input, 20 concurrent
requests."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, load_pipeline

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "_artifacts"
# from the embedded sample's dev set: not in the model's memory bank (its training set), which could
# otherwise hand the sentence's own gold labels back
SENTENCE = "林晓梅在深圳市福田区出席了行业论坛。"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def space_url(swap_run, tmp_path_factory):
    folder, _ = swap_run
    port = free_port()
    log = tmp_path_factory.mktemp("space") / "app.log"
    env = {
        **os.environ,
        "NER_MODEL": str(folder),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "space" / "app.py")], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the Space exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"the Space did not answer on {url}:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def expected_entities(swap_run):
    """What the model behind the Space finds, by the pipeline in this process: ``text -> [(word, type, start,
    end)]``."""
    from modeling import MemoryNetForTokenClassification

    ner = load_pipeline(swap_run[0], MemoryNetForTokenClassification)
    return lambda text: [(e["word"], e["entity_group"], e["start"], e["end"]) for e in ner(text)]


# entities to teach, each with a text that contains it: the test teaches the first one the model then tags
TEACH = [("青禾书局", "company", "他在青禾书局买了书。"), ("白鹭集团", "company", "白鹭集团发布了新产品。"),
         ("林小雨", "name", "昨天林小雨去了医院。")]  # fmt: skip


@pytest.fixture(scope="module")
def lesson(swap_run):
    """(entity, type, text, entities before, entities after teaching) of the first ``TEACH`` entry that the model
    tags once taught and did not tag before, by the pipeline in this process."""
    from modeling import MemoryNetForTokenClassification

    for string, etype, text in TEACH:
        ner = load_pipeline(swap_run[0], MemoryNetForTokenClassification)
        before = [(e["word"], e["entity_group"], e["start"], e["end"]) for e in ner(text)]
        ner.add_entities({string: etype})
        after = [(e["word"], e["entity_group"], e["start"], e["end"]) for e in ner(text)]
        start = text.index(string)
        if (string, etype, start, start + len(string)) in set(after) - set(before):
            return string, etype, text, before, after
    pytest.fail(f"the test model tags none of {[t[0] for t in TEACH]} once taught")


def table_entities(table) -> list:
    return [(word, label, start, end) for word, label, start, end, _ in table["data"]]


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium, which the browser tests drive (skipped where it is missing, except in CI)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def client(space_url):
    from gradio_client import Client

    return Client(space_url, verbose=False)


@pytest.mark.slow
def test_in_a_real_browser(chromium, space_url, expected_entities, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(space_url)
        page.locator("#input-text textarea").fill(SENTENCE)
        page.locator("#submit").click()
        expected = expected_entities(SENTENCE)
        assert expected, "the test model finds no entity in SENTENCE: nothing to show"
        expect(page.locator("#status")).to_contain_text(
            f"{len(expected)} entities in {len(SENTENCE)} characters", timeout=60_000
        )
        entities = page.locator("#entities")
        for word, label, _, _ in expected:
            expect(entities).to_contain_text(word)
            expect(entities).to_contain_text(label)
            expect(page.locator("#entity-table")).to_contain_text(word)
        expect(page.locator("#memories li.memory")).to_have_count(2)  # the test model retrieves 2 memories
        expect(page.locator("#memories mark.ent").first).to_be_visible()
        expect(page.locator("#heatmap table.heat")).to_have_count(2)  # one attention table per memory
        expect(page.locator("#heatmap table.heat").first.locator("tr")).to_have_count(
            len(SENTENCE) + 1
        )  # a header row, a row per character
        shot = tmp_path / "space.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)  # a copy outside pytest's temp dir, to look at after CI (git-ignored)
    shutil.copy(shot, ARTIFACTS / "space.png")


@pytest.mark.slow
def test_teaching_in_a_real_browser_stays_in_its_session(chromium, space_url, lesson, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    string, etype, text, before, after = lesson
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        teacher = browser.new_context(viewport={"width": 1280, "height": 1600}).new_page()
        teacher.goto(space_url)
        teacher.get_by_text("Teach the demo an entity").click()
        teacher.locator("#teach-string textarea, #teach-string input").first.fill(string)
        choice = teacher.locator("#teach-type input")
        choice.click()
        choice.fill(etype)
        teacher.get_by_role("option", name=etype, exact=True).click()
        teacher.locator("#teach").click()
        expect(teacher.locator("#teach-status")).to_contain_text(f"{string} ({etype})", timeout=60_000)
        teacher.locator("#input-text textarea").fill(text)
        teacher.locator("#submit").click()
        expect(teacher.locator("#status")).to_contain_text(f"{len(after)} entit", timeout=60_000)
        expect(teacher.locator("#entity-table")).to_contain_text(string)
        expect(teacher.locator("#memories li.taught").first).to_contain_text(string)  # the memory that carried it
        teacher.screenshot(path=str(tmp_path / "taught.png"), full_page=True)

        other = browser.new_context(viewport={"width": 1280, "height": 1600}).new_page()  # another visitor
        other.goto(space_url)
        other.locator("#input-text textarea").fill(text)
        other.locator("#submit").click()
        expect(other.locator("#status")).to_contain_text(f"{len(before)} entit", timeout=60_000)
        expect(other.locator("#memories li.memory").first).to_be_visible()
        expect(other.locator("#memories li.taught")).to_have_count(0)
        assert string not in [row[0] for row in before]
        expect(other.locator("#entity-table")).not_to_contain_text(string)
        browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "taught.png", ARTIFACTS / "space-taught.png")


def test_what_one_session_teaches_no_other_session_sees(space_url, lesson):
    from gradio_client import Client

    string, etype, text, before, after = lesson
    teacher, other = Client(space_url, verbose=False), Client(space_url, verbose=False)
    taught_status = teacher.predict(string, etype, "", api_name="/teach")
    assert f"{string} ({etype})" in taught_status, taught_status
    status, _, table, memories, _ = teacher.predict(text, api_name="/tag")
    assert table_entities(table) == after
    assert "taught in this session" in memories and string in memories  # the memory that carried it
    status, _, table, memories, _ = other.predict(text, api_name="/tag")
    assert table_entities(table) == before
    assert "taught in this session" not in memories
    # a labelled sentence, and a refusal in one line
    message = other.predict("", etype, f"[{string}]({etype})在这里。", api_name="/teach")
    assert "Taught in this session only: –; 1 memories of your own." in message, message
    refused = other.predict("", etype, f"[{string}](no-such-type)在这里。", api_name="/teach")
    assert refused.startswith("⚠️") and "not among the model's labels" in refused, refused


@pytest.mark.parametrize(
    "text,expect",
    [
        ("", "it is empty"),
        (" \n\t ", "it is empty"),
        ("测" * 20_001, "this demo tags up to 20,000"),
        ("测试文本，" * 2_000, "in 10,000 characters"),
        ("😀👍🏽 好的！", "in 7 characters"),
        ("iPhone 15 Pro 在 2024 年 9 月发布，价格 7999 元。", "characters"),
        ("北京\x00\x07上海\x1b[31m", "3 control characters kept in place"),
    ],
)
def test_bad_input_gets_a_message_or_a_result(client, expected_entities, text, expect):
    status, highlighted, table, memories, _ = client.predict(text, api_name="/tag")
    assert expect in status, status
    if "⚠️" not in status:
        rebuilt = "".join(piece["token"] for piece in highlighted)
        assert rebuilt == text  # every character comes back
        assert table_entities(table) == expected_entities(text)  # the pipeline's entities, at its offsets


def test_20_concurrent_requests_each_get_their_own_answer(client, expected_entities):
    # concurrent requests are tagged in batches: each answer must still belong to its own text,
    # and a refused text (empty, too long) must not take the others of its batch down
    texts = [SENTENCE[i:] + f"第{i}次。" for i in range(18)] + ["", "测" * 20_001]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda t: client.predict(t, api_name="/tag"), texts))
    assert len(answers) == 20
    for text, (status, highlighted, table, memories, heat) in zip(texts[:18], answers):
        assert "⚠️" not in status and f"in {len(text)} characters" in status, status
        assert "".join(piece["token"] for piece in highlighted) == text
        assert table_entities(table) == expected_entities(text)
        assert heat.count("<tr>") == 2 * (len(text) + 1)  # two memories: a header row and a row per character each
    assert "it is empty" in answers[18][0]
    assert "this demo tags up to 20,000" in answers[19][0]
