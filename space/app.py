"""Gradio Space: Chinese NER with the memory network or the seq2seq tagger of this project.

The model is ``NER_MODEL`` (a Hub model id or a local folder written by train.py / push_to_hub.py),
loaded with ``pipeline("chinese-ner", trust_remote_code=True)``, so the Space needs none of the
repository's code. Without ``NER_MODEL``, inside a checkout of the repository, it uses the model
the README's main command writes (``python train.py``: the memory network on the embedded sample
corpus, ``outputs/sample-memory/``), and runs that command first if the folder is missing (about
a minute on a CPU, offline).

    python space/app.py                                    # http://127.0.0.1:7860
    NER_MODEL=outputs/cluener-memory python space/app.py
"""

from __future__ import annotations

import copy
import html
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import gradio as gr
from transformers import pipeline

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEMO_MODEL = REPO / "outputs" / "sample-memory"  # where `python train.py` (no arguments) writes
MAX_CHARS = 20_000
MAX_MEMORY_WINDOWS = 3  # memory panels shown (a long text has one window per sentence)
MAX_BATCH = 16  # concurrent requests tagged in one pipeline call
MAX_TAUGHT = 50  # entities and sentences one session may teach (each adds a memory to the session's own bank)
MARKED = re.compile(r"\[([^\[\]]+)\]\(([^()]+)\)")  # [entity](type) in a taught sentence
HEAT_LEVELS = 10  # shades of the attention heat map
EXAMPLES = [
    "林晓梅是青禾科技的首席执行官，她昨天在杭州市西湖区发布了新产品。",
    "市教育局宣布，今年秋季起全市中小学将推广午间阅读。",
    "周末我们去了西湖，又顺路逛了灵隐寺。",
    "《山河笔记》的作者周明远将在上海书展签售。",
]


def model_location() -> str:
    """``NER_MODEL``, else the README's sample model (trained here on first use)."""
    name = os.environ.get("NER_MODEL", "").strip()
    if name:
        return name
    if not (DEMO_MODEL / "config.json").exists():
        train = REPO / "train.py"
        if not train.exists():
            sys.exit(
                "Set NER_MODEL to a Hub model id or a model folder (there is no train.py here to build the offline "
                "demo model)."
            )
        print(
            f"NER_MODEL is not set and {DEMO_MODEL} does not exist: running `python train.py` (the embedded sample "
            "corpus, about a minute) ...",
            flush=True,
        )
        subprocess.run([sys.executable, str(train)], cwd=REPO, check=True)
    return str(DEMO_MODEL)


MODEL = model_location()
NER = pipeline("chinese-ner", model=MODEL, trust_remote_code=True)
HAS_MEMORY = getattr(NER.model.config, "num_memory", 0) > 0
# a model folder saved before entities could be taught by name carries code without add_entities: no teaching there
CAN_TEACH = hasattr(NER.model, "add_entities")
TYPES = NER.model.entity_types if CAN_TEACH else []


def clean_message(text) -> str | None:
    """Why ``text`` cannot be tagged, or None."""
    if not isinstance(text, str) or not text.strip():
        return "Please type or paste some text (it is empty)."
    if len(text) > MAX_CHARS:
        return f"The text has {len(text):,} characters; this demo tags up to {MAX_CHARS:,}. Please shorten it."
    return None


def marked(text: str, entities: list[dict]) -> str:
    """``text`` as HTML with each entity in a ``<mark>`` labelled by its type."""
    out, pos = [], 0
    for e in entities:
        out.append(html.escape(text[pos : e["start"]]))
        out.append(
            f'<mark class="ent" title="{html.escape(e["entity_group"])}">{html.escape(e["word"])}'
            f"<sub>{html.escape(e['entity_group'])}</sub></mark>"
        )
        pos = e["end"]
    out.append(html.escape(text[pos:]))
    return "".join(out)


def memories_html(windows: list[dict], text: str, taught: set[int] = frozenset()) -> str:
    if not windows:
        return "<p>No memory sentences (the text has no characters to tag).</p>"
    parts = []
    for k, window in enumerate(windows[:MAX_MEMORY_WINDOWS]):
        piece = text[window["start"] : window["end"]]
        parts.append(
            f'<div class="memory-window"><p><b>Sentence {k + 1}</b> ({window["start"]}–{window["end"]}): '
            f"{html.escape(piece)}</p><ol>"
        )
        for memory in window["memories"]:
            if memory["bank_index"] in taught:
                parts.append(
                    f'<li class="memory taught">{marked(memory["text"], memory["entities"])} '
                    "<small>(taught in this session)</small></li>"
                )
            else:
                parts.append(f'<li class="memory">{marked(memory["text"], memory["entities"])}</li>')
        parts.append("</ol></div>")
    if len(windows) > MAX_MEMORY_WINDOWS:
        parts.append(f"<p>… memories of {len(windows) - MAX_MEMORY_WINDOWS} more sentences not shown.</p>")
    return "".join(parts)


def heatmap(window: dict, text: str) -> str:
    """The memory attention M_j of the first sentence against each of its memories (as in the paper's
    figures 6-7), as HTML tables: the browser draws the Chinese characters, and nothing is rendered
    to an image on the server. Shades are relative to the largest weight in each memory's table."""
    piece = text[window["start"] : window["end"]]
    shown = [c if c.isprintable() and not c.isspace() else "·" for c in piece]
    parts = ['<div class="attention">']
    for j, memory in enumerate(window["memories"]):
        top = max((w for row in memory["attention"] for w in row), default=0.0) or 1.0
        head = "".join(f"<th>{html.escape(c)}</th>" for c in memory["text"])
        rows = []
        for c, weights in zip(shown, memory["attention"]):
            cells = "".join(f'<td class="h{min(HEAT_LEVELS - 1, int(HEAT_LEVELS * w / top))}"></td>' for w in weights)
            rows.append(f"<tr><th>{html.escape(c)}</th>{cells}</tr>")
        parts.append(
            f'<table class="heat"><caption>memory {j + 1}</caption><tr><th></th>{head}</tr>{"".join(rows)}</table>'
        )
    parts.append("</div>")
    return "".join(parts)


def tag_one(text: str, out: dict, taught: set[int] = frozenset()) -> tuple:
    """One text and its pipeline output -> (status, highlighted entities, entity table, memory sentences, heat map)."""
    entities = out["entities"]
    shown = [{"entity": e["entity_group"], "start": e["start"], "end": e["end"]} for e in entities]
    rows = [[e["word"], e["entity_group"], e["start"], e["end"], round(e["score"], 3)] for e in entities]
    printable = sum(not unicodedata.category(c).startswith("C") for c in text)
    status = (
        f"{len(entities)} {'entity' if len(entities) == 1 else 'entities'} in {len(text):,} characters"
        + (f" ({len(text) - printable} control characters kept in place)" if printable < len(text) else "")
        + "."
    )
    memory_panel, figure = "", ""
    if HAS_MEMORY:
        memory_panel = memories_html(out["windows"], text, taught)
        figure = heatmap(out["windows"][0], text) if out["windows"] else ""
    return status, {"text": text, "entities": shown}, rows, memory_panel, figure


def session_pipeline():
    """The pipeline of one visitor's session once they teach it: the demo model's weights, shared (not copied),
    with a bank and dictionary of its own, so what one visitor teaches changes no one else's answers."""
    base = NER.model
    model = type(base)(copy.deepcopy(base.config))
    model.load_state_dict(base.state_dict(), assign=True)  # the same tensors; a taught memory makes a new bank
    return type(NER)(model=model.eval(), tokenizer=NER.tokenizer)


def taught_rows(ner) -> set[int]:
    """Bank indices of the memories a session taught (its sentences, then its dictionary entries)."""
    if ner is None or not HAS_MEMORY:
        return set()
    base, model = NER.model, ner.model
    sentences = range(base.num_sentence_memories, model.num_sentence_memories)
    entries = range(model.num_sentence_memories + len(base.config.added_entities), len(model.memory_bank))
    return {*sentences, *entries}


def run_pipeline(texts: list[str], ner=None) -> list[dict]:
    """The pipeline (the session's, else the demo's) on a list of texts (one answer per text). A model without
    memory reads what a session taught by forced matching."""
    ner = ner or NER
    if HAS_MEMORY:
        return ner(texts, return_memories=True)
    return [{"entities": e, "windows": []} for e in ner(texts, force_entities=bool(ner.added_entities))]


def tag(texts: list[str], sessions: list | None = None) -> tuple[list, ...]:
    """A batch of concurrent requests (Gradio's ``batch=True``) with each one's session pipeline (None for a
    session that taught nothing): the valid texts of each pipeline go through it in one call; each request
    gets its own answer or message."""
    sessions = sessions or [None] * len(texts)
    empty = ({"text": "", "entities": []}, [], "", "")
    answers: list[tuple | None] = [None] * len(texts)
    groups: dict[int, list[int]] = {}
    for k, text in enumerate(texts):
        problem = clean_message(text)
        if problem:
            answers[k] = (f"⚠️ {problem}",) + empty
        else:
            groups.setdefault(id(sessions[k]), []).append(k)
    for todo in groups.values():
        ner = sessions[todo[0]]
        try:
            outs = run_pipeline([texts[k] for k in todo], ner)
            for k, out in zip(todo, outs):
                answers[k] = tag_one(texts[k], out, taught_rows(ner))
        except Exception:  # find the text that fails, so the others still get their answers
            for k in todo:
                try:
                    answers[k] = tag_one(texts[k], run_pipeline([texts[k]], ner)[0], taught_rows(ner))
                except Exception as err:  # a clear message in the page, never a stack trace
                    answers[k] = (f"⚠️ The text could not be tagged ({type(err).__name__}: {err}).",) + empty
    return tuple(list(column) for column in zip(*answers))


def marked_sentence(sentence: str) -> tuple[str, list[dict]]:
    """``"[林小雨](name)在[羽松湾](scene)"`` -> the text and its entities (offsets into the text)."""
    text, entities, pos = "", [], 0
    for m in MARKED.finditer(sentence):
        text += sentence[pos : m.start()]
        entities.append({"start": len(text), "end": len(text) + len(m.group(1)), "entity_group": m.group(2).strip()})
        text += m.group(1)
        pos = m.end()
    return text + sentence[pos:], entities


def teach(string: str, etype: str, sentence: str, ner):
    """Teach this session's pipeline an entity by name, or a sentence with its entities marked ``[text](type)``."""
    string, sentence = (string or "").strip(), (sentence or "").strip()
    if not string and not sentence:
        return ner, "⚠️ Type an entity and choose its type, or a sentence with its entities marked as [text](type)."
    ner = ner or session_pipeline()
    if len(ner.added_entities) + len(taught_rows(ner)) >= MAX_TAUGHT:
        return ner, f"⚠️ This demo keeps up to {MAX_TAUGHT} taught items a session."
    try:
        if string:
            ner.add_entities({string: etype})
        if sentence:
            text, entities = marked_sentence(sentence)
            if not entities:
                return (
                    ner,
                    "⚠️ Mark the sentence's entities as [text](type), e.g. [林小雨](name)在[羽松湾](scene)看日出。",
                )
            ner.add_memories([text], entities=[entities])
    except (ValueError, KeyError) as err:
        return ner, f"⚠️ {err}"
    shown = ", ".join(f"{s} ({t})" for s, t in ner.added_entities.items())
    return ner, f"Taught in this session only: {shown or '–'}; {len(taught_rows(ner))} memories of your own."


CSS = (
    "mark.ent {background:#fde68a; padding:0 2px; border-radius:3px} mark.ent sub {color:#92400e; margin-left:2px} "
    ".attention {display:flex; flex-wrap:wrap; gap:16px; overflow-x:auto} "
    "table.heat {border-collapse:collapse; font-size:11px; line-height:1} table.heat th {font-weight:normal; "
    "padding:1px 2px} "
    "table.heat td {width:12px; height:12px; padding:0; border:1px solid #fff} "
    + " ".join(
        f"table.heat td.h{k} {{background:rgba(37,99,235,{k / (HEAT_LEVELS - 1):.2f})}}" for k in range(HEAT_LEVELS)
    )
)

with gr.Blocks(title="Chinese NER") as demo:
    gr.Markdown(
        f"# Chinese named entity recognition\nModel: `{MODEL}` ({type(NER.model).__name__}). "
        "Entities are shown in the text and as a table with character offsets into your text."
        + (
            " The memory network also shows the training sentences it tagged each sentence with, and where it looked "
            "in them."
            if HAS_MEMORY
            else ""
        )
    )
    with gr.Row():
        text = gr.Textbox(
            label="Text", lines=4, placeholder="输入中文文本，例如：" + EXAMPLES[0], elem_id="input-text", scale=4
        )
        submit = gr.Button("Tag entities", variant="primary", elem_id="submit", scale=1)
    gr.Examples(EXAMPLES, inputs=text)
    status = gr.Markdown(elem_id="status")
    highlighted = gr.HighlightedText(label="Entities", combine_adjacent=False, show_legend=True, elem_id="entities")
    table = gr.Dataframe(
        headers=["entity", "type", "start", "end", "score"],
        label="Entity table (start / end are character offsets)",
        interactive=False,
        elem_id="entity-table",
    )
    with gr.Column(visible=HAS_MEMORY):
        gr.Markdown(
            "### Memory sentences\nRetrieved from the training bank saved in the model, with their gold labels."
        )
        memories = gr.HTML(label="Memory sentences", elem_id="memories")
        gr.Markdown(
            "Memory attention of the first sentence (rows: its characters; columns: the memory's; darker is more "
            "weight):"
        )
        attention = gr.HTML(label="Memory attention of the first sentence", elem_id="heatmap")
    session = gr.State(None)  # this visitor's pipeline once they teach it (session_pipeline), else None
    with gr.Accordion("Teach the demo an entity (for your session only)", open=False, visible=CAN_TEACH):
        gr.Markdown(
            "Add an entity by name, or a sentence with its entities marked as `[text](type)`. "
            + (
                "The memory network reads it as a memory sentence wherever your text contains it (no retraining); "
                if HAS_MEMORY
                else "This model has no memory: what you teach is matched in your text and overrides the model there; "
            )
            + "other visitors do not see it."
        )
        with gr.Row():
            teach_string = gr.Textbox(label="Entity", placeholder="羽松湾", elem_id="teach-string", scale=2)
            teach_type = gr.Dropdown(
                TYPES, value=TYPES[0] if TYPES else None, label="Type", elem_id="teach-type", scale=1
            )
        teach_sentence = gr.Textbox(
            label="or a labelled sentence", placeholder="[林小雨](name)在[羽松湾](scene)看日出。",
            elem_id="teach-sentence", visible=HAS_MEMORY,
        )  # fmt: skip
        teach_button = gr.Button("Teach", elem_id="teach")
        teach_status = gr.Markdown(elem_id="teach-status")
    # teaching changes a session's bank: never while a batch is tagging with it (the same queue as tagging)
    teach_button.click(
        teach,
        [teach_string, teach_type, teach_sentence, session],
        [session, teach_status],
        api_name="teach",
        concurrency_id="model",
    )
    outputs = [status, highlighted, table, memories, attention]
    # one event for the button and Enter, so both share one queue: one batch at a time through the
    # model (the memory model caches bank encodings), up to MAX_BATCH waiting requests per batch
    gr.on(
        [submit.click, text.submit],
        tag,
        inputs=[text, session],
        outputs=outputs,
        api_name="tag",
        batch=True,
        max_batch_size=MAX_BATCH,
        concurrency_limit=1,
        concurrency_id="model",
    )

if __name__ == "__main__":
    demo.launch(css=CSS)  # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose the address (127.0.0.1:7860 by default)
