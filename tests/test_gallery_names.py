"""What the page calls a hub preset's gallery: on ``flickr30k-cpu``, the Flickr30k test split and its real count,
one choice, one dataset label for its searches and evaluations; and the page's note on CLIP, which the README
repeats.

The preset is the real ``flickr30k-cpu`` on a simulated hub (tests/hubsim.py: generated photos in the real
webdataset shards, offline); its three encoders are seeded fakes, which is all naming and labelling need.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis import presets
from analysis.engine import Engine, GalleryKind, GallerySource
from analysis.store import Store
from cascade_ui.common import Session
from cascade_ui.controls import OWN_GALLERY, CascadeValues, choice_of, gallery_choices, gallery_table, validated
from tests import hubsim
from tests.conftest import ROOT
from tests.fakes import FakeBiEncoder

N_IMAGES = 32  # the simulated split (the real one has 1,000); flickr30k-cpu's k_1 = 20 fits it
FLICKR = "clip-benchmark/wds_flickr30k"
WORLD = GallerySource(GalleryKind.WORLD)


@pytest.fixture
def flickr_engine(tmp_path, monkeypatch):
    """An engine on ``flickr30k-cpu`` over a simulated hub holding a 32-image Flickr30k test split."""
    from huggingface_hub import constants

    hub = tmp_path / "hf" / "hub"
    hubsim.put_wds_dataset(hub, FLICKR, N_IMAGES, n_shards=2, seed=1)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    preset = presets.get("flickr30k-cpu")
    fakes = {
        name: FakeBiEncoder(f"level{i}", seed=i + 1, image_macs=10 ** (i + 1)) for i, name in enumerate(preset.levels)
    }
    engine = Engine(
        Store(tmp_path / "cascade.duckdb"),
        preset=preset,
        create=lambda name: fakes[name],
        is_cross=lambda name: False,
        image_gmacs=lambda encoder, mode: 1.0,
        names=list(fakes),
    )
    yield engine
    engine.store.close()


def _values(gallery: str, preset: presets.Preset) -> CascadeValues:
    """The Search tab's controls set to ``preset``'s cascade on the radio entry ``gallery``."""
    n = len(preset.levels)
    return CascadeValues(
        gallery=gallery,
        folder="",
        uploads=None,
        n_levels=n,
        names=(*preset.levels, *[None] * (4 - n)),
        ks=(*preset.ks, *[None] * (4 - n)),
        rerank=False,
        rerank_name=None,
        rerank_k=None,
        index="exact",
    )


def test_the_gallery_choice_names_the_flickr30k_split_and_its_count(flickr_engine):
    engine = flickr_engine
    table = gallery_table(engine)
    assert table == {
        OWN_GALLERY: WORLD,
        "COCO (hub)": GallerySource(GalleryKind.DATASET, path="coco"),
        "server folder": GallerySource(GalleryKind.FOLDER),
        "uploaded images": GallerySource(GalleryKind.UPLOAD),
    }  # one Flickr30k choice: "Flickr30k (hub)" is the preset's own gallery
    # Before the split is loaded: its documented size; once loaded (as the Space prepares it), what is there.
    assert gallery_choices(engine, table)[0] == ("Flickr30k test split, 1,000 images", OWN_GALLERY)
    engine.corpus(WORLD)
    own = f"Flickr30k test split, {N_IMAGES} images"
    labels = [label for label, _ in gallery_choices(engine, table)]
    assert labels == [own, "COCO (hub)", "server folder", "uploaded images"]
    stages = " > ".join(f"{name} (k={k})" for name, k in zip(engine.preset.levels, engine.preset.ks))
    state = Session(engine.default_choice())
    _, line = validated(state, _values(OWN_GALLERY, engine.preset), table, engine.galleries.name)
    assert line == f"Cascade: {stages} on {own}"
    _, line = validated(state, _values("COCO (hub)", engine.preset), table, engine.galleries.name)
    assert line == f"Cascade: {stages} on COCO test split, 5,000 images"  # not loaded: its documented size


def test_the_page_opens_on_the_named_gallery(flickr_engine):
    """The built page (not served): the radio's first choice, selected, and the status line under it."""
    from cascade_ui.page import build_app

    engine = flickr_engine
    engine.corpus(WORLD)
    demo = build_app(engine)
    by_id = {getattr(block, "elem_id", None): block for block in demo.blocks.values()}
    own = f"Flickr30k test split, {N_IMAGES} images"
    radio = by_id["gallery"]
    assert radio.value == OWN_GALLERY and radio.choices[:2] == [(own, OWN_GALLERY), ("COCO (hub)", "COCO (hub)")]
    assert by_id["search-status"].value.endswith(f" on {own}")
    assert "built-in world" not in by_id["search-status"].value
    assert not any("built-in world" in label for label, _ in radio.choices)


@pytest.mark.browser
@pytest.mark.slow
def test_a_page_opened_after_the_split_is_loaded_counts_its_images(flickr_engine):
    """Served before the split is loaded (as a Space serves while it prepares); a page opened after names it
    with the count of what was loaded, in the radio and the status line."""
    import app
    from tests.app_engine import free_port
    from tests.test_browser import WAIT_MS, browser_page

    engine = flickr_engine
    demo = app.launch(engine, port=free_port(), block=False)
    try:
        engine.corpus(WORLD)
        own = f"Flickr30k test split, {N_IMAGES} images"
        with browser_page() as page:
            page.goto(demo.local_url, timeout=WAIT_MS)
            page.wait_for_function(f"(document.querySelector('#search-status')?.innerText || '').endsWith({own!r})")
            page.locator("#gallery").get_by_text(own).wait_for()
            assert page.locator("#gallery").get_by_text("1,000 images").count() == 0
            assert "built-in world" not in page.locator("#gallery").inner_text()
            assert page.locator("#gallery label").filter(has_text=own).locator("input").is_checked()
            page.locator("#gallery").get_by_text("COCO (hub)").click()
            page.wait_for_function(
                "(document.querySelector('#search-status')?.innerText || '').endsWith('5,000 images')"
            )
            page.locator("#gallery").get_by_text(own).click()
            page.wait_for_function(f"(document.querySelector('#search-status')?.innerText || '').endsWith({own!r})")
    finally:
        demo.close()


def test_a_search_and_an_evaluation_share_the_datasets_label(flickr_engine):
    """The Search tab's one Flickr30k choice and both of the Evaluate tab's names for it: one label, one corpus."""
    from cascade_ui.evaluate_tab import dataset_source

    engine = flickr_engine
    engine.corpus(WORLD)
    table = gallery_table(engine)
    choice = choice_of(_values(OWN_GALLERY, engine.preset), table)
    searched = engine.search(choice, "a red dog on a green background")
    hub = dataset_source("Flickr30k test split (hub)", "", "")
    default = dataset_source("built-in test gallery", "", "")
    labels = {engine.dataset_name(source) for source in (choice.gallery, hub, default)}
    assert labels == {"flickr30k:test"}
    small = replace(choice, levels=choice.levels[:2], ks=(N_IMAGES, 10))
    engine.evaluate([small], choice.gallery, limit=2)
    engine.evaluate([small], hub, limit=2)
    stored = engine.store.evaluations()
    assert list(stored["dataset"]) == ["flickr30k:test"] * 2
    assert len(engine.evaluations(default)) == 2  # the Evaluate tab shows both, whichever name it was given
    # The search was logged against the very gallery the evaluations read: the split, loaded once.
    logged = engine.store.frame("SELECT DISTINCT corpus_id, corpus_size FROM queries")
    assert list(logged["corpus_id"]) == [engine.corpus(hub).fingerprint] == [searched.corpus.fingerprint]
    assert list(logged["corpus_size"]) == [N_IMAGES]


def test_the_note_on_clip_is_on_the_page_and_in_the_readme(tmp_path):
    import gradio as gr

    from cascade_ui.about import ABOUT_CLIP, ABOUT_TITLE
    from cascade_ui.page import build_app
    from tests.app_engine import make_engine

    for link in (
        "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "https://github.com/openai/CLIP/blob/main/model-card.md",
        "https://shannon.cs.illinois.edu/DenotationGraph/",
    ):
        assert f"]({link})" in ABOUT_CLIP
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"**{ABOUT_TITLE}.** {' '.join(ABOUT_CLIP.split())}" in " ".join(readme.split())
    engine = make_engine(tmp_path)
    try:
        blocks = build_app(engine).blocks.values()
    finally:
        engine.store.close()
    (note,) = [b for b in blocks if isinstance(b, gr.Accordion) and b.label == ABOUT_TITLE]
    assert note.open is False
    assert [c.value for c in note.children if isinstance(c, gr.Markdown)] == [ABOUT_CLIP]


def test_the_evaluate_tab_names_the_split_once_and_never_the_built_in_gallery(flickr_engine, tmp_path):
    """On the hub preset the Evaluate tab's radio offers the split once, named as the Search tab names it."""
    from cascade_ui.evaluate_tab import DEFAULT_DATASET, dataset_choices

    labels = {value: label for label, value in dataset_choices(flickr_engine)}
    assert labels[DEFAULT_DATASET] == "Flickr30k test split, 1,000 images"  # the documented size, not yet loaded
    flickr_engine.corpus(WORLD)
    labels = {value: label for label, value in dataset_choices(flickr_engine)}
    assert labels[DEFAULT_DATASET] == f"Flickr30k test split, {N_IMAGES} images"  # counted once loaded
    assert "Flickr30k test split (hub)" not in labels.values() and "COCO 5k test split (hub)" in labels.values()
    assert not any("built-in" in label for label in labels.values())

    with Store(tmp_path / "world.duckdb") as store:  # the offline preset keeps its words and every hub entry
        world = {value: label for label, value in dataset_choices(Engine(store, preset=presets.get("shapes")))}
    assert world[DEFAULT_DATASET] == DEFAULT_DATASET and "Flickr30k test split (hub)" in world.values()
