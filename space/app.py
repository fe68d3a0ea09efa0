"""Gradio Space: Chinese NER with the memory network or the seq2seq tagger of this project.

The model is ``NER_MODEL`` (a Hub model id or a local folder written by train.py / push_to_hub.py),
loaded with ``pipeline("chinese-ner", trust_remote_code=True)``, so the Space needs none of the
repository's code. Without ``NER_MODEL``, inside a checkout of the repository, it uses the model
the README's main command writes (``python train.py``: the memory network on the embedded sample
corpus, ``outputs/sample-bilstm/``), and runs that command first if the folder is missing (about
a minute on a CPU, offline).

    python space/app.py                                    # http://127.0.0.1:7860
    NER_MODEL=outputs/cluener-bilstm python space/app.py
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import gradio as gr
from matplotlib import font_manager
from matplotlib.figure import Figure
from transformers import pipeline

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEMO_MODEL = REPO / "outputs" / "sample-bilstm"  # where `python train.py` (no arguments) writes
MAX_CHARS = 20_000
MAX_MEMORY_WINDOWS = 3  # memory panels shown (a long text has one window per sentence)
EXAMPLES = [
    "林晓梅是青禾科技的首席执行官，她昨天在杭州市西湖区发布了新产品。",
    "市教育局宣布，今年秋季起全市中小学将推广午间阅读。",
    "周末我们去了西湖，又顺路逛了灵隐寺。",
    "《山河笔记》的作者周明远将在上海书展签售。",
]
CJK_FONTS = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC", "SimHei", "Microsoft YaHei", "DejaVu Sans"]


def model_location() -> str:
    """``NER_MODEL``, else the README's sample model (trained here on first use)."""
    name = os.environ.get("NER_MODEL", "").strip()
    if name:
        return name
    if not (DEMO_MODEL / "config.json").exists():
        train = REPO / "train.py"
        if not train.exists():
            sys.exit("Set NER_MODEL to a Hub model id or a model folder (there is no train.py here to build the offline demo model).")
        print(f"NER_MODEL is not set and {DEMO_MODEL} does not exist: running `python train.py` (the embedded sample corpus, about a minute) ...", flush=True)
        subprocess.run([sys.executable, str(train)], cwd=REPO, check=True)
    return str(DEMO_MODEL)


MODEL = model_location()
NER = pipeline("chinese-ner", model=MODEL, trust_remote_code=True)
HAS_MEMORY = getattr(NER.model.config, "num_memory", 0) > 0
LOCK = threading.Lock()  # one request at a time through the model (the memory model caches bank encodings)


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
        out.append(f'<mark class="ent" title="{html.escape(e["entity_group"])}">{html.escape(e["word"])}'
                   f'<sub>{html.escape(e["entity_group"])}</sub></mark>')
        pos = e["end"]
    out.append(html.escape(text[pos:]))
    return "".join(out)


def memories_html(windows: list[dict], text: str) -> str:
    if not windows:
        return "<p>No memory sentences (the text has no characters to tag).</p>"
    parts = []
    for k, window in enumerate(windows[:MAX_MEMORY_WINDOWS]):
        piece = text[window["start"] : window["end"]]
        parts.append(f'<div class="memory-window"><p><b>Sentence {k + 1}</b> ({window["start"]}–{window["end"]}): {html.escape(piece)}</p><ol>')
        for memory in window["memories"]:
            parts.append(f'<li class="memory">{marked(memory["text"], memory["entities"])}</li>')
        parts.append("</ol></div>")
    if len(windows) > MAX_MEMORY_WINDOWS:
        parts.append(f"<p>… memories of {len(windows) - MAX_MEMORY_WINDOWS} more sentences not shown.</p>")
    return "".join(parts)


def heatmap(window: dict, text: str) -> Figure:
    """The memory attention M_j of the first sentence against each of its memories (as in the paper's figures 6-7)."""
    piece = text[window["start"] : window["end"]]
    memories = window["memories"]
    fig = Figure(figsize=(4 + 3.2 * len(memories), 1.5 + 0.15 * len(piece)), layout="constrained")
    family = [f for f in CJK_FONTS if any(f == x.name for x in font_manager.fontManager.ttflist)] or ["DejaVu Sans"]
    axes = fig.subplots(1, len(memories), squeeze=False)[0]
    for j, (ax, memory) in enumerate(zip(axes, memories)):
        image = ax.imshow(memory["attention"], aspect="auto", cmap="Blues", vmin=0.0)
        ax.set_xticks(range(len(memory["text"])), list(memory["text"]), fontsize=7, family=family)
        ax.set_yticks(range(len(piece)), [c if c.isprintable() else "·" for c in piece], fontsize=7, family=family)
        ax.set_title(f"memory {j + 1}", fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.6)
    return fig


def tag(text: str):
    """Input text -> (status, highlighted entities, entity table, memory sentences, attention heat map)."""
    empty = ("", {"text": "", "entities": []}, [], "", None)
    problem = clean_message(text)
    if problem:
        return (f"⚠️ {problem}",) + empty[1:]
    try:
        with LOCK:
            out = NER(text, return_memories=True) if HAS_MEMORY else {"entities": NER(text), "windows": []}
    except Exception as err:  # a clear message in the page, never a stack trace
        return (f"⚠️ The text could not be tagged ({type(err).__name__}: {err}).",) + empty[1:]
    entities = out["entities"]
    shown = [{"entity": e["entity_group"], "start": e["start"], "end": e["end"]} for e in entities]
    rows = [[e["word"], e["entity_group"], e["start"], e["end"], round(e["score"], 3)] for e in entities]
    printable = sum(not unicodedata.category(c).startswith("C") for c in text)
    status = f"{len(entities)} {'entity' if len(entities) == 1 else 'entities'} in {len(text):,} characters" + (f" ({len(text) - printable} control characters kept in place)" if printable < len(text) else "") + "."
    memory_panel, figure = "", None
    if HAS_MEMORY:
        memory_panel = memories_html(out["windows"], text)
        figure = heatmap(out["windows"][0], text) if out["windows"] else None
    return status, {"text": text, "entities": shown}, rows, memory_panel, figure


CSS = "mark.ent {background:#fde68a; padding:0 2px; border-radius:3px} mark.ent sub {color:#92400e; margin-left:2px}"

with gr.Blocks(title="Chinese NER") as demo:
    gr.Markdown(
        f"# Chinese named entity recognition\nModel: `{MODEL}` ({type(NER.model).__name__}). "
        "Entities are shown in the text and as a table with character offsets into your text."
        + (" The memory network also shows the training sentences it tagged each sentence with, and where it looked in them." if HAS_MEMORY else "")
    )
    with gr.Row():
        text = gr.Textbox(label="Text", lines=4, placeholder="输入中文文本，例如：" + EXAMPLES[0], elem_id="input-text", scale=4)
        submit = gr.Button("Tag entities", variant="primary", elem_id="submit", scale=1)
    gr.Examples(EXAMPLES, inputs=text)
    status = gr.Markdown(elem_id="status")
    highlighted = gr.HighlightedText(label="Entities", combine_adjacent=False, show_legend=True, elem_id="entities")
    table = gr.Dataframe(headers=["entity", "type", "start", "end", "score"], label="Entity table (start / end are character offsets)",
                         interactive=False, elem_id="entity-table")
    with gr.Column(visible=HAS_MEMORY):
        gr.Markdown("### Memory sentences\nRetrieved from the training bank saved in the model, with their gold labels.")
        memories = gr.HTML(label="Memory sentences", elem_id="memories")
        attention = gr.Plot(label="Memory attention of the first sentence", elem_id="heatmap")
    outputs = [status, highlighted, table, memories, attention]
    submit.click(tag, inputs=text, outputs=outputs, api_name="tag")
    text.submit(tag, inputs=text, outputs=outputs, api_name=False)

demo.queue(default_concurrency_limit=1)

if __name__ == "__main__":
    demo.launch(css=CSS)  # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose the address (127.0.0.1:7860 by default)
