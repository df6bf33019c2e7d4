"""The cascade builder (preset, gallery, levels, ks, re-ranker) and how its values become the session's Choice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import gradio as gr

from analysis.engine import Choice, Engine, GallerySource
from cascade.errors import ConfigError
from cascade_ui.common import MAX_LEVELS, Session, describe
from cascade_ui.formatting import describe_choice

GALLERY_LABELS = {
    "built-in world": "world",
    "Flickr30k (hub)": "dataset:flickr30k",
    "COCO (hub)": "dataset:coco",
    "server folder": "folder",
    "uploaded images": "upload",
}
# Level 1's index (cascade.index): the exact reference, half the memory, or FAISS for large galleries
# (an approximate index is measured against exact first and refused below 0.95 recall@k_1).
INDEX_CHOICES = ("exact", "exact:float16", "faiss:HNSW32", "faiss:IVF256,Flat")


def choice_from(gallery: str, folder: str, uploads: Sequence[str] | None, n_levels: int, *rest) -> Choice:
    """The session's Choice from the Search tab's controls (names and ks per level, then the re-ranker)."""
    names, ks = rest[:MAX_LEVELS], rest[MAX_LEVELS : 2 * MAX_LEVELS]
    rerank, rerank_name, rerank_k, *index = rest[2 * MAX_LEVELS :]
    kind, _, name = GALLERY_LABELS[gallery].partition(":")
    source = GallerySource(kind, path=name or folder or "", uploads=tuple(str(p) for p in uploads or ()))
    levels, level_ks = list(names[: int(n_levels)]), list(ks[: int(n_levels)])
    if rerank:
        levels.append(rerank_name)
        level_ks.append(rerank_k)
    for number, (name, k) in enumerate(zip(levels, level_ks), start=1):
        if not name:
            raise ConfigError(f"stage {number} has no encoder")
        if k is None:
            raise ConfigError(f"stage {number} has no k")
    return Choice(source.normalised(), tuple(str(n).strip() for n in levels), tuple(int(k) for k in level_ks),
                  index=str(index[0]).strip() if index and index[0] else "exact")  # fmt: skip


@dataclass
class CascadeControls:
    """The Search tab's cascade builder; ``values()`` order is what ``choice_from`` reads."""

    preset: gr.Dropdown
    gallery: gr.Radio
    folder: gr.Textbox
    uploads: gr.File
    n_levels: gr.Slider
    rows: list[gr.Row]
    names: list[gr.Dropdown]
    ks: list[gr.Number]
    rerank: gr.Checkbox
    rerank_name: gr.Dropdown
    rerank_k: gr.Number
    index: gr.Dropdown

    def values(self) -> list:
        return [self.gallery, self.folder, self.uploads, self.n_levels, *self.names, *self.ks, self.rerank,
                self.rerank_name, self.rerank_k, self.index]  # fmt: skip


def cascade_controls(engine: Engine) -> CascadeControls:
    """Lay out the builder, set to the engine's preset; ``MAX_LEVELS`` rows exist, those past the preset hidden."""
    bi_names, cross_names = engine.encoder_names()
    preset, cross_names = engine.preset, cross_names or [""]
    with gr.Row():
        preset_box = gr.Dropdown([preset.name, "custom"], value=preset.name, label="Preset", scale=1)
        gallery = gr.Radio(list(GALLERY_LABELS), value="built-in world", label="Gallery", scale=2)
        shared = ", ".join(map(str, engine.folders)) or "no folder shared (start the app with --folder)"
        folder = gr.Textbox(label="Folder on the server", visible=False, scale=2, placeholder=shared)
        uploads = gr.File(file_count="multiple", file_types=["image"], label="Images", visible=False, scale=2)
    n_levels = gr.Slider(1, MAX_LEVELS, value=len(preset.levels), step=1, label="Bi-encoder levels")
    rows, names, ks = [], [], []
    for i in range(MAX_LEVELS):
        default = i < len(preset.levels)
        with gr.Row(visible=default) as row:
            names.append(gr.Dropdown(bi_names, value=preset.levels[i] if default else bi_names[0],
                                     allow_custom_value=True, label=f"Level {i + 1} encoder", scale=3))  # fmt: skip
            ks.append(gr.Number(preset.ks[i] if default else 10, precision=0, minimum=1, label=f"k{i + 1}", scale=1,
                                elem_id=f"k{i + 1}"))  # fmt: skip
        rows.append(row)
    with gr.Row():
        rerank = gr.Checkbox(False, label="Cross-encoder re-ranks as the last stage", scale=2, elem_id="rerank")
        rerank_name = gr.Dropdown(cross_names, value=preset.reranker or cross_names[0], allow_custom_value=True,
                                  label="Re-ranker", visible=False, scale=3)  # fmt: skip
        rerank_k = gr.Number(preset.ks[-1], precision=0, minimum=1, label="k (re-ranked)", visible=False, scale=1)
        index = gr.Dropdown(list(INDEX_CHOICES), value="exact", allow_custom_value=True, label="Level-1 index",
                            scale=2, elem_id="level1-index")  # fmt: skip
    return CascadeControls(preset_box, gallery, folder, uploads, n_levels, rows, names, ks, rerank, rerank_name,
                           rerank_k, index)  # fmt: skip


def validated(engine: Engine, state: Session, values: Sequence) -> tuple[Session, str]:
    """The session after an edit and the status line saying so; an invalid edit keeps the last valid choice."""
    try:
        new = choice_from(*values)
        new.config()  # cheap checks: names and ks
    except Exception as err:  # noqa: BLE001  (an invalid edit is a message; the last valid choice stays)
        message = describe(err)
        return replace(state, problem=message), f"**Not valid:** {message}"
    return Session(new), f"Cascade: {describe_choice(new)}"


def wire_controls(engine: Engine, c: CascadeControls, session: gr.State, status: gr.Markdown) -> None:
    """Every edit re-validates the cascade at once (no queue): the page says what is wrong as you type."""

    def update_choice(state: Session, *values):
        new, line = validated(engine, state, values)
        return {session: new, status: gr.Markdown(line)}

    quick = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
    triggers = [control.change for control in c.values()]
    gr.on(triggers, update_choice, [session, *c.values()], [session, status], **quick)
    c.n_levels.change(lambda n: [gr.Row(visible=i < n) for i in range(MAX_LEVELS)], c.n_levels, c.rows, **quick)
    c.gallery.change(lambda g: (gr.Textbox(visible=g == "server folder"), gr.File(visible=g == "uploaded images")),
                     c.gallery, [c.folder, c.uploads], **quick)  # fmt: skip
    c.rerank.change(lambda on: (gr.Dropdown(visible=on), gr.Number(visible=on)), c.rerank,
                    [c.rerank_name, c.rerank_k], **quick)  # fmt: skip
    preset = engine.preset

    def apply_preset(name: str) -> dict:
        if name != preset.name:  # "custom": keep whatever the controls say
            return {}
        return {c.gallery: "built-in world", c.n_levels: len(preset.levels), c.rerank: False,
                **dict(zip(c.names, preset.levels)), **dict(zip(c.ks, preset.ks))}  # fmt: skip

    c.preset.input(apply_preset, c.preset, [c.gallery, c.n_levels, c.rerank, *c.names, *c.ks], **quick)
