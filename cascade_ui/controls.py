"""The cascade builder (preset, gallery, levels, ks, re-ranker) and how its values become the session's Choice."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import gradio as gr

from analysis.engine import Choice, Engine, GalleryKind, GallerySource
from analysis.galleries import resolved
from cascade.errors import ConfigError
from cascade_ui import uploads as limits
from cascade_ui.common import MAX_LEVELS, Session, components, describe, named_values
from cascade_ui.formatting import describe_choice

# Each gallery the radio offers, as the source it opens; a folder's path and the uploads come from the boxes.
GALLERIES = {
    "built-in world": GallerySource(GalleryKind.WORLD),
    "Flickr30k (hub)": GallerySource(GalleryKind.DATASET, path="flickr30k"),
    "COCO (hub)": GallerySource(GalleryKind.DATASET, path="coco"),
    "server folder": GallerySource(GalleryKind.FOLDER),
    "uploaded images": GallerySource(GalleryKind.UPLOAD),
}
DEFAULT_GALLERY = "built-in world"
OWN_GALLERY = "preset"  # the radio's value for the preset's own gallery, whatever its label names
IMPORTED_GALLERY = "imported index ({})"  # one radio entry per index imported into the database, by its encoder
GallerySourceName = Callable[[GallerySource], "str | None"]  # the engine's name of a gallery (Galleries.name)


def gallery_table(engine: Engine) -> dict[str, GallerySource]:
    """The radio's table, by value (as the page is built): the preset's own gallery first (``OWN_GALLERY``), then
    ``GALLERIES`` less any that is the same gallery, then each index imported into the engine's database.

    On a hub preset the first is that dataset, so its hub entry is not offered again: one gallery, one choice,
    one dataset label.
    """
    preset, world = engine.preset, GallerySource(GalleryKind.WORLD)
    own = resolved(world, preset)
    table = {OWN_GALLERY: world}
    table |= {
        label: s for label, s in GALLERIES.items() if s.kind is not GalleryKind.WORLD and resolved(s, preset) != own
    }
    imports = engine.galleries.imports()
    return table | {IMPORTED_GALLERY.format(i.name): GallerySource(GalleryKind.IMPORTED, path=i.name) for i in imports}


def gallery_choices(engine: Engine, table: Mapping[str, GallerySource]) -> list[tuple[str, str]]:
    """The radio's ``(label, value)`` pairs: the preset's own gallery by the engine's name for it (a hub preset's:
    ``Flickr30k test split, 1,000 images``, its images counted once loaded), every other by its value."""
    own = engine.galleries.name(table[OWN_GALLERY]) or DEFAULT_GALLERY
    return [(own if value == OWN_GALLERY else value, value) for value in table]


def described(engine: Engine, choice: Choice) -> str:
    """``describe_choice`` naming the gallery as the engine does (a hub preset's own: its dataset, its images)."""
    return describe_choice(choice, engine.galleries.name(choice.gallery))


# Level 1's index (cascade.index): the exact reference, half the memory, or FAISS for large galleries
# (an approximate index is measured against exact first and refused below 0.95 recall@k_1).
INDEX_CHOICES = ("exact", "exact:float16", "auto", "faiss:HNSW32", "faiss:IVF256,Flat")


def filled(
    template: GallerySource, path: str | None = "", image_root: str | None = "", uploads: Sequence[str] | None = ()
) -> GallerySource:
    """``template`` completed with what the page's boxes hold, keeping only the fields its kind uses."""
    completed = replace(
        template,
        path=template.path or path or "",
        image_root=image_root or "",
        uploads=tuple(str(p) for p in uploads or ()),
    )
    return completed.normalised()


@dataclass(frozen=True)
class CascadeValues:
    """What the builder's controls hold (``CascadeInputs`` names the component of each field)."""

    gallery: str
    folder: str | None
    uploads: Sequence[str] | None
    n_levels: float
    names: tuple[str | None, ...]
    ks: tuple[float | None, ...]
    rerank: bool
    rerank_name: str | None
    rerank_k: float | None
    index: str | None


def choice_of(values: CascadeValues, galleries: Mapping[str, GallerySource] = GALLERIES) -> Choice:
    """The session's Choice from the builder's values: the one place it is made (``galleries``: the radio's table)."""
    source = filled(galleries[values.gallery], path=values.folder, uploads=values.uploads)
    n_levels = int(values.n_levels)
    levels, ks = list(values.names[:n_levels]), list(values.ks[:n_levels])
    if values.rerank:
        levels.append(values.rerank_name)
        ks.append(values.rerank_k)
    for number, (name, k) in enumerate(zip(levels, ks), start=1):
        if not name:
            raise ConfigError(f"stage {number} has no encoder")
        if k is None:
            raise ConfigError(f"stage {number} has no k")
    index = str(values.index).strip() if values.index else "exact"
    return Choice(source, tuple(str(name).strip() for name in levels), tuple(int(k) for k in ks), index=index)


@dataclass(frozen=True)
class CascadeInputs:
    """The builder's components whose values make the Choice (field for field, ``CascadeValues``)."""

    gallery: gr.Radio
    folder: gr.Textbox
    uploads: gr.File
    n_levels: gr.Slider
    names: tuple[gr.Dropdown, ...]
    ks: tuple[gr.Number, ...]
    rerank: gr.Checkbox
    rerank_name: gr.Dropdown
    rerank_k: gr.Number
    index: gr.Dropdown

    def read(self, values: dict) -> CascadeValues:
        """The values of a handler given these components as a set (``{component: value}``)."""
        return CascadeValues(**named_values(self, values))


@dataclass(frozen=True)
class CascadeControls:
    """The Search tab's cascade builder: the preset box, the inputs, one row per level (hidden past n_levels), and
    the gallery radio's table (``gallery_table``)."""

    preset: gr.Dropdown
    inputs: CascadeInputs
    rows: tuple[gr.Row, ...]
    galleries: Mapping[str, GallerySource]
    stored: gr.State  # the session's uploaded images (uploads.Ledger)
    upload_note: gr.Markdown  # why an upload was refused


def cascade_controls(engine: Engine) -> CascadeControls:
    """Lay out the builder, set to the engine's preset; ``MAX_LEVELS`` rows exist, those past the preset hidden."""
    bi_names, cross_names = engine.encoder_names()
    preset, galleries = engine.preset, gallery_table(engine)
    with gr.Row():
        preset_box = gr.Dropdown([preset.name, "custom"], value=preset.name, label="Preset", scale=1)
        gallery = gr.Radio(
            gallery_choices(engine, galleries), value=OWN_GALLERY, label="Gallery", scale=2, elem_id="gallery"
        )
        shared = ", ".join(map(str, engine.folders)) or "no folder shared (start the app with --folder)"
        folder = gr.Textbox(label="Folder on the server", visible=False, scale=2, placeholder=shared)
        most, hours = limits.IMAGES, limits.DELETE_CACHE[1] // 3600
        images = f"Images (at most {most.files}, {most.total_bytes // limits.MIB} MiB in all; kept {hours} h)"
        uploads = gr.File(
            file_count="multiple", file_types=["image"], label=images, visible=False, scale=2, elem_id="uploads"
        )
    upload_note = gr.Markdown(elem_id="upload-status")
    n_levels = gr.Slider(1, MAX_LEVELS, value=len(preset.levels), step=1, label="Bi-encoder levels")
    rows, names, ks = _level_rows(engine, bi_names)
    with gr.Row():
        rerank = gr.Checkbox(False, label="Cross-encoder re-ranks as the last stage", scale=2, elem_id="rerank")
        cross_names = cross_names or [""]
        rerank_name = gr.Dropdown(
            cross_names,
            value=preset.reranker or cross_names[0],
            allow_custom_value=True,
            label="Re-ranker",
            visible=False,
            scale=3,
        )
        rerank_k = gr.Number(preset.ks[-1], precision=0, minimum=1, label="k (re-ranked)", visible=False, scale=1)
        index = gr.Dropdown(
            list(INDEX_CHOICES),
            value="exact",
            allow_custom_value=True,
            label="Level-1 index",
            scale=2,
            elem_id="level1-index",
        )
    inputs = CascadeInputs(gallery, folder, uploads, n_levels, names, ks, rerank, rerank_name, rerank_k, index)
    return CascadeControls(preset_box, inputs, rows, galleries, gr.State(limits.Ledger()), upload_note)


def _level_rows(
    engine: Engine, bi_names: list[str]
) -> tuple[tuple[gr.Row, ...], tuple[gr.Dropdown, ...], tuple[gr.Number, ...]]:
    """One row (encoder, k) per possible level; the preset's levels filled in and shown."""
    preset, rows, names, ks = engine.preset, [], [], []
    for i in range(MAX_LEVELS):
        shown = i < len(preset.levels)
        with gr.Row(visible=shown) as row:
            name = preset.levels[i] if shown else bi_names[0]
            label = f"Level {i + 1} encoder"
            names.append(gr.Dropdown(bi_names, value=name, allow_custom_value=True, label=label, scale=3))
            k = preset.ks[i] if shown else 10
            ks.append(gr.Number(k, precision=0, minimum=1, label=f"k{i + 1}", scale=1, elem_id=f"k{i + 1}"))
        rows.append(row)
    return tuple(rows), tuple(names), tuple(ks)


def validated(
    state: Session,
    values: CascadeValues,
    galleries: Mapping[str, GallerySource] = GALLERIES,
    name: GallerySourceName = lambda source: None,
) -> tuple[Session, str]:
    """The session after an edit and the status line saying so; an invalid edit keeps the last valid choice.

    ``name``: the engine's name of a gallery (``Galleries.name``; None: the page's own words).
    """
    try:
        new = choice_of(values, galleries)
        new.config()  # the cheap checks: names and ks (a gallery smaller than the ks is cut at search time)
    except Exception as err:  # noqa: BLE001  (an invalid edit is a message; the last valid choice stays)
        message = describe(err)
        return replace(state, problem=message), f"**Not valid:** {message}"
    return Session(new), f"Cascade: {describe_choice(new, name(new.gallery))}"


QUICK = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}


def wire_controls(engine: Engine, c: CascadeControls, session: gr.State, status: gr.Markdown) -> None:
    """Every edit re-validates the cascade at once (no queue): the page says what is wrong as you type."""
    inputs = c.inputs

    def update_choice(values: dict) -> dict:
        new, line = validated(values[session], inputs.read(values), c.galleries, engine.galleries.name)
        return {session: new, status: gr.Markdown(line)}

    watched = components(inputs)
    gr.on([control.change for control in watched], update_choice, {session, *watched}, [session, status], **QUICK)
    inputs.n_levels.change(
        lambda n: [gr.Row(visible=i < n) for i in range(MAX_LEVELS)], inputs.n_levels, c.rows, **QUICK
    )

    def gallery_boxes(label: str) -> tuple[gr.Textbox, gr.File, gr.Dropdown]:
        source = c.galleries[label]
        kind = source.kind
        first = gr.Dropdown(value=source.path) if kind is GalleryKind.IMPORTED else gr.Dropdown()  # its encoder
        return gr.Textbox(visible=kind is GalleryKind.FOLDER), gr.File(visible=kind is GalleryKind.UPLOAD), first

    boxes = [inputs.folder, inputs.uploads, inputs.names[0]]
    inputs.gallery.change(gallery_boxes, inputs.gallery, boxes, **QUICK)
    reranker = [inputs.rerank_name, inputs.rerank_k]
    inputs.rerank.change(lambda on: (gr.Dropdown(visible=on), gr.Number(visible=on)), inputs.rerank, reranker, **QUICK)
    # Queued (unlike the edits): a refusal's warning toast travels on the queue's stream.
    admitted = [inputs.uploads, c.stored, c.upload_note]
    inputs.uploads.upload(
        admit_images, [inputs.uploads, c.stored], admitted, api_visibility="private", show_progress="hidden"
    )
    _wire_preset(engine, c)

    def named() -> tuple[gr.Radio, gr.Markdown]:
        # On each page load: the page was built before its gallery was loaded (the Space prepares it after
        # serving), so the count is read again; a new page's session holds the default cascade.
        choices = gallery_choices(engine, c.galleries)
        return gr.Radio(choices=choices), gr.Markdown(f"Cascade: {described(engine, engine.default_choice())}")

    gr.on(None, named, None, [inputs.gallery, status], **QUICK)  # no trigger, no input: the page's load


def admit_images(paths: Sequence[str] | None, ledger: limits.Ledger) -> tuple:
    """The uploads box after an upload: the images the session may store (``uploads.IMAGES``), the rest deleted
    and named in the note under the box."""
    admission = limits.admit(paths or (), ledger, limits.IMAGES)
    if not admission.refused:
        return gr.skip(), admission.ledger, gr.Markdown("")
    gr.Warning(admission.message)
    return list(admission.kept) or None, admission.ledger, gr.Markdown(f"**Upload refused:** {admission.message}")


def _wire_preset(engine: Engine, c: CascadeControls) -> None:
    """Choosing the preset puts its gallery, levels and ks back; "custom" keeps whatever the controls say."""
    preset, inputs = engine.preset, c.inputs
    targets = [inputs.gallery, inputs.n_levels, inputs.rerank, *inputs.names, *inputs.ks]

    def apply_preset(name: str) -> dict:
        if name != preset.name:
            return {}
        levels = {**dict(zip(inputs.names, preset.levels)), **dict(zip(inputs.ks, preset.ks))}
        return {inputs.gallery: OWN_GALLERY, inputs.n_levels: len(preset.levels), inputs.rerank: False, **levels}

    c.preset.input(apply_preset, c.preset, targets, **QUICK)
