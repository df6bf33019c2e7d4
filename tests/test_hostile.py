"""Hostile input: any query text, any k vector, path traversal, files that are not images, checkpoints that are pickles.

The promise under test: whatever a user sends is either served (a query stored
verbatim in the log) or refused with one clear line (ConfigError,
CorpusError, WeightsUnavailable, an HTTP 4xx); never a crash, a hang, a file
outside the shared folders, or code run from a checkpoint.
"""

from __future__ import annotations

import os
import pickle
import re
import socket
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import app
from analysis.engine import Choice, GallerySource
from analysis.store import Store
from cascade import world
from cascade.corpus import Corpus, load_image
from cascade.encoders import create_encoder, shapes
from cascade.errors import ConfigError, CorpusError, WeightsUnavailable
from cascade.search import CascadeSearcher
from cascade.types import CascadeConfig, validate_ks
from tests.app_engine import PRESET, make_engine
from tests.fakes import count_features, make_gallery, small_and_large

N_IMAGES = 12
KS = (6, 3)
HOSTILE_QUERIES = [
    "'; DROP TABLE queries; --",
    'Robert"); DROP TABLE features; --',
    "' OR '1'='1",
    "?, ?, ?); DELETE FROM queries; --",
    "$1 %s %d {0} {} \\N NULL null",
    "a\x00b",
    "\x00",
    "\x1b[31mred\x1b[0m\x07\x08",
    "line\r\nbreak\ttab\x0bvt\x0cff",
    "\u202eevil\u202c \ufeffbom \u200bzero-width",
    "e\u0301 \U0001f431\u200d\U0001f464 \U0001f1fa\U0001f1f8 \U0001f600" * 3,
    "日本語のクエリ 🐈 عربى",
    "\U0010ffff\ue000",
]
LONG_QUERY = ("a red circle 🐱 '; -- \x00 " * 4000)[:100_000]
WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2003\u2028\u2029\u202f\u205f\u3000"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A two-level searcher over 12 images whose cache and log are one DuckDB store."""
    root = tmp_path_factory.mktemp("hostile")
    corpus = Corpus.from_folder(make_gallery(root / "gallery", N_IMAGES)[0].parent)
    store = Store(root / "db.duckdb")
    levels = small_and_large(large_seed=2)
    searcher = CascadeSearcher(levels, corpus, cache=store, log=store)
    searcher.build()
    yield searcher, store
    store.close()


def logged_count(store: Store) -> int:
    return int(store.frame("SELECT count(*) AS n FROM queries")["n"][0])


# ---------------------------------------------------------------- query strings


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=st.one_of(st.text(), st.text(alphabet=WHITESPACE), st.sampled_from(HOSTILE_QUERIES)))
@example(query=LONG_QUERY)
@example(query="")
def test_any_query_is_logged_verbatim_or_refused_as_empty(searched, query):
    searcher, store = searched
    before = logged_count(store)
    if not query.strip():
        with pytest.raises(ConfigError, match="the query is empty"):
            searcher.search(query, KS)
        assert logged_count(store) == before  # a refused query leaves no trace
        return
    result = searcher.search(query, KS)
    assert result.query == query and len(result.ids) == KS[-1]
    last = store.frame("SELECT query, config_key FROM queries ORDER BY query_id DESC LIMIT 1")
    assert last["query"][0] == query  # byte for byte: quotes, NULs, control characters, 100k characters
    assert last["config_key"][0] == searcher.config(KS).key
    assert logged_count(store) == before + 1


def test_injection_attempts_leave_every_table_intact(searched):
    searcher, store = searched
    features_before = count_features(store, searcher.levels[0].id)
    for query in HOSTILE_QUERIES:
        searcher.search(query, KS)
    tables = set(store.frame("SELECT table_name FROM information_schema.tables")["table_name"])
    assert {"meta", "features", "queries", "query_levels", "evaluations"} <= tables
    assert count_features(store, searcher.levels[0].id) == features_before == N_IMAGES
    logged = store.frame("SELECT query FROM queries")["query"].tolist()
    assert all(query in logged for query in HOSTILE_QUERIES)


def test_a_query_that_is_not_unicode_text_is_a_config_error(searched):
    """JSON lets a client send a lone surrogate ("\\ud800"); it cannot be stored as UTF-8, so it must be refused."""
    searcher, store = searched
    before = logged_count(store)
    with pytest.raises(ConfigError):
        searcher.search("a red \ud800 circle", KS)
    assert logged_count(store) == before


@settings(max_examples=60, deadline=None)
@given(query=st.one_of(st.text(), st.sampled_from(HOSTILE_QUERIES)))
@example(query=LONG_QUERY)
def test_real_tokenisers_take_any_text(query):
    """The shapes tokeniser and OpenCLIP's: any text gives a fixed-size, finite, unit embedding."""
    vocab = world.vocabulary()
    tokens = shapes.Tokeniser(vocab, shapes.TEXT_TOWER.max_tokens)([query])
    assert tokens.shape == (1, shapes.TEXT_TOWER.max_tokens)
    assert int(tokens.max()) < len(vocab) + len(shapes.Tokeniser.SPECIALS)
    embedding = create_encoder("openclip:tiny-vit-s@random").encode_texts([query])
    assert embedding.shape == (1, 32) and np.isfinite(embedding).all()
    assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-4


# ---------------------------------------------------------------- k vectors

K_VALUES = st.one_of(st.integers(-2, 20), st.booleans(), st.floats(allow_nan=True), st.none(), st.just(10**12))


def is_valid_ks(ks: list, n_levels: int, n_images: int) -> bool:
    """The rule, written out independently: one whole k >= 1 per level, never growing, k_1 <= N."""
    whole = all(type(k) is int for k in ks)
    return (
        len(ks) == n_levels
        and whole
        and all(k >= 1 for k in ks)
        and all(a >= b for a, b in zip(ks, ks[1:]))
        and (not ks or ks[0] <= n_images)
    )


@settings(max_examples=400, deadline=None)
@given(ks=st.lists(K_VALUES, max_size=5), n_levels=st.integers(1, 4), n_images=st.integers(1, 30))
def test_validate_ks_passes_exactly_the_valid_vectors(ks, n_levels, n_images):
    if is_valid_ks(ks, n_levels, n_images):
        validate_ks(tuple(ks), n_levels=n_levels, n_images=n_images)
        CascadeConfig(levels=tuple(f"level{i}" for i in range(n_levels)), ks=tuple(ks))
    else:
        with pytest.raises(ConfigError):
            validate_ks(tuple(ks), n_levels=n_levels, n_images=n_images)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ks=st.lists(st.one_of(st.integers(-1, N_IMAGES + 2), st.booleans(), st.floats(0, 20)), max_size=3))
def test_the_searcher_runs_exactly_the_valid_k_vectors(searched, ks):
    searcher, store = searched
    before = logged_count(store)
    if not is_valid_ks(ks, 2, N_IMAGES):
        with pytest.raises(ConfigError):
            searcher.search("a query", ks)
        assert logged_count(store) == before
        return
    result = searcher.search("a query", ks)
    assert [len(level.ids) for level in result.levels] == ks
    assert set(result.levels[1].ids) <= set(result.levels[0].ids)
    assert logged_count(store) == before + 1


# ---------------------------------------------------------------- the app's file serving


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client-side ``..`` normalisation); (status, whole response)."""
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_path_traversal_never_reaches_a_file_outside_the_gallery(served, tmp_path):
    engine, demo = served
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-7f3a")
    world_root = engine.world_root
    corpus = engine.corpus(GallerySource("world"))
    image = corpus.paths[corpus.ids[0]]
    (world_root / "images" / "link.png").symlink_to(secret)  # a link inside the shared folder, pointing out
    up = os.path.relpath(secret, world_root / "images")  # ../../../secret.txt
    encoded = up.replace("..", "%2e%2e").replace("/", "%2f")
    attempts = [
        f"/gradio_api/file={secret}",
        f"/gradio_api/file={world_root}/images/{up}",
        f"/gradio_api/file={world_root}/images/{encoded}",
        f"/gradio_api/file={world_root}/images/{encoded.replace('%', '%25')}",
        f"/gradio_api/file={world_root}/images/{up.replace('/', '%5c')}",
        f"/gradio_api/file={world_root}/images/link.png",
        f"/gradio_api/file/{world_root}/images/{up}",
        f"/gradio_api/file={world_root}/images/%00/{up}",
        f"/gradio_api/file={engine.store.path}",
        f"/gradio_api/file={Path(app.__file__).resolve()}",
        "/gradio_api/file=file:///etc/passwd",
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=../../../../../../etc/passwd",
        "/gradio_api/file=~/.bashrc",
        "/gradio_api/file=/proc/self/environ",
        "/assets/../../../../../../etc/passwd",
        "/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/svelte/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/gradio_api/proxy=http://127.0.0.1:1/",
        f"/gradio_api/proxy=file://{secret}",
    ]
    status, response = raw_get(demo.local_url, f"/gradio_api/file={image}")  # the control: gallery images are served
    assert status == 200 and response.endswith(image.read_bytes())
    leaks = []
    for target in attempts:
        status, response = raw_get(demo.local_url, target)
        if status < 400 or b"TOPSECRET" in response or b"root:x:" in response:
            leaks.append((target, status))
    assert not leaks


def test_the_search_api_serves_only_gallery_files(served, tmp_path):
    """What /search hands out are gallery images; a client can fetch those and nothing beside them."""
    from gradio_client import Client

    engine, demo = served
    client = Client(demo.local_url, verbose=False, download_files=False)
    *_, data = client.predict("two red circles", api_name="/search")
    files = {result["file"] for stage in data["stages"] for result in stage["results"]}
    allowed = {path.name for path in engine.corpus(GallerySource("world")).paths.values()}
    assert files and files <= allowed
    with httpx.Client(base_url=demo.local_url.rstrip("/")) as http:
        assert http.get(f"/gradio_api/file={engine.world_root.parent}").status_code == 403  # a folder: no listing


# ---------------------------------------------------------------- files that are not images


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width x height`` pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def hostile_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "bomb.png": png_claiming(60_000, 60_000),  # 3.6e9 pixels: over twice Pillow's MAX_IMAGE_PIXELS
        "text.png": b"just some text, not a picture\n",
        "empty.jpg": b"",
        "page.svg": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>',
        "truncated.png": png_claiming(8, 8)[:30],
        "script.html": b"<html><script>fetch('/gradio_api/file=/etc/passwd')</script></html>",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def test_uploads_that_are_not_images_are_skipped_and_the_rest_searched(tmp_path):
    engine = make_engine(tmp_path / "engine")
    try:
        bad = hostile_files(tmp_path / "uploads")
        good = make_gallery(tmp_path / "uploads", 5)
        assert Image.MAX_IMAGE_PIXELS is not None  # nobody switched Pillow's bomb limit off
        upload = Choice(GallerySource("upload", uploads=tuple(str(p) for p in bad + good)), PRESET.levels, (5, 2))
        outcome = engine.search(upload, "anything")
        assert sorted(path.name for path in outcome.corpus.paths.values()) == sorted(p.name for p in good)
        assert sorted(path.name for path in outcome.corpus.skipped) == sorted(p.name for p in bad)
        only_bad = Choice(GallerySource("upload", uploads=tuple(str(p) for p in bad)), PRESET.levels, (5, 2))
        with pytest.raises(CorpusError, match=f"none of the {len(bad)} uploaded file"):
            engine.search(only_bad, "anything")
    finally:
        engine.store.close()


def test_a_folder_of_hostile_files_is_refused_with_a_message(tmp_path):
    folder = tmp_path / "folder"
    hostile_files(folder)
    with pytest.raises(CorpusError, match=r"no readable images in .* \(6 other file\(s\)\)"):
        Corpus.from_folder(folder)


def test_between_one_and_two_limits_pillow_warns_and_the_image_still_loads(tmp_path, monkeypatch):
    """Pillow's own rule, respected as is: over MAX_IMAGE_PIXELS warns, over twice that refuses."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    Image.new("RGB", (40, 30), "red").save(tmp_path / "big.png")  # 1,200 pixels: warned, loaded
    Image.new("RGB", (50, 50), "red").save(tmp_path / "huge.png")  # 2,500 pixels: refused
    with pytest.warns(Image.DecompressionBombWarning):
        assert load_image(tmp_path / "big.png").size == (40, 30)
    corpus = Corpus.from_paths([tmp_path / "big.png", tmp_path / "huge.png"])
    assert [p.name for p in corpus.paths.values()] == ["big.png"]
    assert [p.name for p in corpus.skipped] == ["huge.png"]


# ---------------------------------------------------------------- checkpoints that are not checkpoints


class RunsCode:
    """Unpickling this runs a shell command that creates ``marker``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_checkpoints(folder: Path, marker: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"raw pickle": folder / "evil.pt", "torch.save zip": folder / "evil_zip.pt", "bin": folder / "evil.bin",
             "pickle named safetensors": folder / "evil.safetensors"}  # fmt: skip
    payload = {"state_dict": RunsCode(marker)}
    paths["raw pickle"].write_bytes(pickle.dumps(payload))
    torch.save(payload, paths["torch.save zip"])
    torch.save(payload, paths["bin"])
    paths["pickle named safetensors"].write_bytes(pickle.dumps(payload))
    return paths


def test_the_evil_checkpoint_really_runs_code_when_unpickled(tmp_path):
    """The control: without the guard, loading these files runs the payload (so the tests below mean something)."""
    marker = tmp_path / "ran"
    pickle.loads(evil_checkpoints(tmp_path / "ckpt", marker)["raw pickle"].read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip", "bin", "pickle named safetensors"])
def test_an_openclip_checkpoint_that_is_a_pickle_runs_no_code(tmp_path, kind):
    marker = tmp_path / "ran"
    path = evil_checkpoints(tmp_path / "ckpt", marker)[kind]
    with pytest.raises(Exception) as raised:  # noqa: PT011  (the type is the next test's subject)
        create_encoder(f"openclip:tiny-vit-s@{path}")
    assert not marker.exists(), f"loading {path.name} ran the pickle's code"
    assert not re.search(r"weights_only\W{0,3}(=|set to)\W{0,3}False", str(raised.value))  # never advise that


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip", "pickle named safetensors"])
def test_an_openclip_checkpoint_that_is_not_one_is_weights_unavailable(tmp_path, kind):
    marker = tmp_path / "ran"
    path = evil_checkpoints(tmp_path / "ckpt", marker)[kind]
    with pytest.raises(WeightsUnavailable, match=str(path.name)):
        create_encoder(f"openclip:tiny-vit-s@{path}")
    assert not marker.exists()


def write_shapes_family(folder: Path) -> Path:
    """Valid (randomly initialised) shapes weights files, as train_shapes writes them."""
    vocab = world.vocabulary()
    for model in ("text", "small", "medium"):
        shapes.save(shapes.build(model, vocab), model, vocab, folder)
    return folder


def test_valid_shapes_weights_load(tmp_path):
    """The control for the corrupt cases below: the same files, unharmed, give an encoder."""
    encoder = shapes.load("small", write_shapes_family(tmp_path / "w"))
    assert encoder.encode_texts(["a red circle"]).shape == (1, shapes.IMAGE_TOWERS["small"].dim)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickle", "other architecture", "missing", "empty"])
def test_corrupt_shapes_weights_are_weights_unavailable(tmp_path, damage):
    folder = write_shapes_family(tmp_path / "w")
    target = shapes.weights_path("small", folder)
    marker = tmp_path / "ran"
    if damage == "garbage":
        target.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "pickle":
        target.write_bytes(pickle.dumps({"weights": RunsCode(marker)}))
    elif damage == "other architecture":  # a real weights file, of the medium tower
        shapes.weights_path("medium", folder).replace(target)
    elif damage == "missing":
        target.unlink()
    else:
        target.write_bytes(b"")
    with pytest.raises(WeightsUnavailable, match="shapes weights .*shapes_small.safetensors"):
        shapes.load("small", folder)
    assert not marker.exists()


def test_a_blip_checkpoint_with_pickled_weights_runs_no_code(tmp_path):
    from tests.blip_tiny import save_tiny_checkpoint

    folder = save_tiny_checkpoint(tmp_path / "blip")
    marker = tmp_path / "ran"
    (folder / "model.safetensors").unlink()
    torch.save({"weights": RunsCode(marker)}, folder / "pytorch_model.bin")  # only a pickle is left
    with pytest.raises(WeightsUnavailable, match="model.safetensors"):
        create_encoder(f"blip:{folder}")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["pickle", "garbage"])
def test_a_blip_checkpoint_whose_safetensors_is_not_one_is_weights_unavailable(tmp_path, damage):
    from tests.blip_tiny import save_tiny_checkpoint

    folder = save_tiny_checkpoint(tmp_path / "blip")
    marker = tmp_path / "ran"
    payload = pickle.dumps({"weights": RunsCode(marker)}) if damage == "pickle" else os.urandom(2048)
    (folder / "model.safetensors").write_bytes(payload)
    with pytest.raises(WeightsUnavailable):
        create_encoder(f"blip:{folder}")
    assert not marker.exists()
