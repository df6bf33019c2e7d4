"""The shapes encoder family: the contract, its weights files, and what the shipped weights achieve."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cascade import world
from cascade.encoders import create_encoder, known_names, shapes
from cascade.encoders.base import BiEncoder, CrossEncoder
from cascade.encoders.shapes.adapters import _world_array
from cascade.errors import EncoderNotFound, WeightsUnavailable
from cascade.paths import ASSETS_DIR
from tests.conftest import ROOT
from tools import train_shapes

BI_ENCODERS = ("small", "medium", "large")


@pytest.fixture(scope="module")
def quick_weights(tmp_path_factory):
    """A family trained for 3 tiny steps per stage (checks the pipeline, not the models)."""
    out = tmp_path_factory.mktemp("shapes-quick")
    assert train_shapes.main(["--quick", "--out", str(out), "--eval-images", "10"]) == 0
    return out


def test_quick_training_writes_loadable_weights_and_a_report(quick_weights):
    for model in (*shapes.MODELS, "text"):
        assert shapes.weights_path(model, quick_weights).is_file()
    report = json.loads((quick_weights / "shapes_family.json").read_text())
    assert report["train_config"]["joint_steps"] == 3
    assert set(report["test"]["recall"]) >= {"small", "medium", "large"}
    assert report["weights_bytes"] == sum(p.stat().st_size for p in quick_weights.glob("*.safetensors"))
    encoders = {name: shapes.load(name, quick_weights) for name in BI_ENCODERS}
    assert len({encoder.text_tower_id for encoder in encoders.values()}) == 1  # one shared text tower
    assert len({encoder.id for encoder in encoders.values()}) == 3
    images = [Image.fromarray(item.image()) for item in world.gallery(5, seed=1)]
    for name, encoder in encoders.items():
        assert isinstance(encoder, BiEncoder) and encoder.id.startswith(f"shapes:{name}@")
        features = encoder.encode_images(images, batch_size=2)
        assert features.shape == (5, encoder.dim) and features.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    cross = shapes.load("cross", quick_weights)
    assert isinstance(cross, CrossEncoder)
    features = cross.encode_images(images)
    tower = shapes.IMAGE_TOWERS[shapes.CROSS_TOWER]
    assert features.shape == (5, tower.dim + tower.widths[-1] * tower.map_size**2)
    scores = cross.score("a red circle on a gray background", features)
    assert scores.shape == (5,) and np.isfinite(scores).all()
    assert cross.score("a red circle", features[:0]).shape == (0,)


def test_score_pairs_gives_each_pair_its_own_querys_score():
    """Two queries' candidates in one call, in an order that mixes them: each pair as ``score`` rates it."""
    cross, large = shapes.load("cross", ASSETS_DIR), shapes.load("large", ASSETS_DIR)
    features = cross.encode_images([Image.fromarray(item.image()) for item in world.gallery(6, seed=4)])
    texts = ["a red circle on a gray background", "two blue striped squares"]
    embeddings = large.encode_texts(texts)  # the family's shared text tower
    which = np.array([1, 0, 0, 1, 1, 0])  # pair i: image i with query which[i]
    paired = cross.score_pairs(features, embeddings[which], batch_size=4)  # two batches
    by_query = np.stack([cross.score(text, features) for text in texts])
    np.testing.assert_allclose(paired, by_query[which, np.arange(6)], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="6 image rows for 2 query embeddings"):
        cross.score_pairs(features, embeddings)


def test_ids_follow_the_weights(quick_weights, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(quick_weights, copy)
    assert shapes.load("small", copy).id == shapes.load("small", quick_weights).id
    text = shapes.read_module("text", copy)
    with torch.no_grad():
        text.head.bias.add_(1.0)
    shapes.save(text, "text", world.vocabulary(), copy)  # a retrained text tower changes every id
    assert shapes.load("small", copy).id != shapes.load("small", quick_weights).id
    assert shapes.load("small", copy).text_tower_id != shapes.load("small", quick_weights).text_tower_id
    assert shapes.load("cross", copy).id != shapes.load("cross", quick_weights).id  # it shares the text tower
    digest = shapes.load("large", copy).id.split("@")[1]
    assert shapes.load(f"large@{digest}", copy).id.endswith(digest)
    with pytest.raises(WeightsUnavailable, match="not @0000000000"):
        shapes.load("large@0000000000", copy)


def test_retraining_only_the_cross_encoder_keeps_the_bi_encoders(quick_weights, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(quick_weights, copy)
    before = {name: shapes.load(name, copy).id for name in shapes.MODELS}
    argv = ["--quick", "--stages", "cross", "--seed", "7", "--out", str(copy), "--eval-images", "0"]
    assert train_shapes.main(argv) == 0
    after = {name: shapes.load(name, copy).id for name in shapes.MODELS}
    assert {name: after[name] == before[name] for name in shapes.MODELS} == {
        "small": True,
        "medium": True,
        "large": True,
        "cross": False,
    }
    report = json.loads((copy / "shapes_family.json").read_text())
    assert report["stages"] == "cross" and set(report["train_seconds"]) == {"joint", "students", "cross"}


def test_missing_or_corrupt_weights_say_how_to_regenerate(quick_weights, tmp_path):
    with pytest.raises(WeightsUnavailable, match="python -m tools.train_shapes"):
        shapes.load("small", tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(quick_weights, broken)
    shapes.weights_path("medium", broken).write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(WeightsUnavailable, match="python -m tools.train_shapes") as caught:
        shapes.load("medium", broken)
    assert "\n" not in str(caught.value)
    # a valid file of another model is refused, not half loaded
    shutil.copy(shapes.weights_path("small", broken), shapes.weights_path("large", broken))
    with pytest.raises(WeightsUnavailable, match="another architecture"):
        shapes.load("large", broken)


def test_unknown_names_are_not_found():
    with pytest.raises(EncoderNotFound, match="shapes:smal"):
        create_encoder("shapes:smal")
    assert {"shapes:small", "shapes:medium", "shapes:large", "shapes:cross"} <= set(known_names("shapes"))


def test_tokeniser_takes_any_text():
    tokeniser = shapes.Tokeniser(world.vocabulary(), max_tokens=8)
    tokens = tokeniser(["Two BIG grey Circles!", "", "zebra", "a " * 100])
    assert tokens.shape == (4, 8) and tokens.dtype == torch.long
    ids = {word: i + len(shapes.Tokeniser.SPECIALS) for i, word in enumerate(world.vocabulary())}
    assert tokens[0, :5].tolist() == [shapes.Tokeniser.CLS, ids["two"], ids["large"], ids["gray"], ids["circles"]]
    assert tokens[1].tolist() == [shapes.Tokeniser.CLS] + [shapes.Tokeniser.PAD] * 7
    assert tokens[2, :2].tolist() == [shapes.Tokeniser.CLS, shapes.Tokeniser.UNK]
    assert (tokens[3, 1:] == ids["a"]).all()  # cut at max_tokens


def test_image_costs_grow_with_the_family():
    macs = {name: create_encoder(f"shapes:{name}").image_macs for name in BI_ENCODERS}
    assert macs["small"] < macs["medium"] < macs["large"]
    assert macs["large"] >= 10 * macs["small"]
    cross = create_encoder("shapes:cross")
    large = create_encoder("shapes:large")
    assert cross.pair_macs > 0 and cross.image_macs > 0
    assert large.text_macs == create_encoder("shapes:small").text_macs > 0


def test_recall_and_cascade_helpers():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.4, 0.6, 0.1]])
    positives = torch.tensor([0, 1, 1])
    assert train_shapes.recall_at_k(scores, positives, (1, 2, 3)) == pytest.approx({1: 200 / 3, 2: 100.0, 3: 100.0})
    second = torch.tensor([[0.1, 0.9, 0.2], [0.1, 0.7, 0.6], [0.3, 0.2, 0.1]])
    # k_1 covering the gallery: the cascade is the second level alone
    assert torch.equal(train_shapes.cascade_scores(scores, second, 3), second)
    one = train_shapes.cascade_scores(scores, second, 1)
    assert train_shapes.recall_at_k(one, positives, (3,)) == pytest.approx({3: 200 / 3})  # query 1 lost its image


def test_shipped_weights_encode_free_text():
    encoder = create_encoder("shapes:large")
    assert encoder.id.startswith("shapes:large@") and encoder.text_tower_id.startswith("shapes:text@")
    texts = ["", "!!!", "zebra crossing", "A RED circle " * 50, "two small striped red stars"]
    embeddings = encoder.encode_texts(texts)
    assert embeddings.shape == (5, encoder.dim) and np.isfinite(embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_shipped_weights_are_small():
    files = list(ASSETS_DIR.glob("shapes_*.safetensors"))
    assert {f.name for f in files} >= {f"shapes_{m}.safetensors" for m in (*shapes.MODELS, "text")}
    assert sum(f.stat().st_size for f in files) <= 25 * 2**20


def test_shipped_report_matches_the_weights_and_the_brief():
    """``shapes_family.json`` is what ``train_shapes`` measured on the whole test gallery, for these very weights."""
    report = json.loads((ASSETS_DIR / "shapes_family.json").read_text())
    test = report["test"]
    assert test["n_images"] >= 5000 and test["n_queries"] >= test["n_images"]
    # The ids the report names are these files' bytes: sha256 of each file, then of "model:text" (10 hex digits).
    files = {m: shapes.weights_path(m, ASSETS_DIR) for m in (*shapes.MODELS, "text")}
    digest = {m: hashlib.sha256(path.read_bytes()).hexdigest()[:10] for m, path in files.items()}
    assert set(test["models"]) == set(shapes.MODELS)
    for name, recorded in test["models"].items():
        joint = hashlib.sha256(f"{digest[name]}:{digest['text']}".encode()).hexdigest()[:10]
        assert recorded["id"] == f"shapes:{name}@{joint}"
        encoder = create_encoder(f"shapes:{name}")
        assert encoder.id == recorded["id"] and encoder.image_macs == recorded["image_macs"]
    assert report["weights_bytes"] == sum(path.stat().st_size for path in files.values())
    recall = test["recall"]
    r1 = {name: recall[name]["R@1"] for name in BI_ENCODERS}
    assert r1["small"] < r1["medium"] < r1["large"] and r1["large"] >= 60 and r1["large"] - r1["small"] >= 15
    assert test["k_1"] <= test["n_images"] // 50
    cascade = recall[f"small>large@{test['k_1']}"]
    assert all(abs(cascade[k] - recall["large"][k]) <= 1.0 for k in ("R@1", "R@5", "R@10"))
    assert recall[f"large>cross@{test['rerank_k']}"]["R@1"] > r1["large"]
    assert sum(report["train_seconds"].values()) < 30 * 60


@pytest.mark.slow
def test_shipped_report_recalls_are_measured_again_on_the_whole_test_gallery():
    """The report's recalls, recomputed by brute force (numpy ranks over every caption and image, about 20 s)."""
    from analysis import presets

    test = json.loads((ASSETS_DIR / "shapes_family.json").read_text())["test"]
    corpus = presets.gallery("shapes")
    captions = [(i, c) for i, image_id in enumerate(corpus.ids) for c in corpus.captions[image_id]]
    positives, texts = np.array([i for i, _ in captions]), [c for _, c in captions]
    assert (len(corpus), len(texts)) == (test["n_images"], test["n_queries"])
    images, rows, k_1 = [corpus.load(image_id) for image_id in corpus.ids], np.arange(len(texts)), test["k_1"]

    def recall(ranks: np.ndarray) -> dict[str, float]:  # a rank counts the images scored strictly higher
        return {f"R@{k}": round(100.0 * float(np.mean(ranks < k)), 2) for k in (1, 5, 10)}

    for name in BI_ENCODERS:  # small, then medium, then large: one (queries, images) matrix at a time
        encoder = create_encoder(f"shapes:{name}")
        features = encoder.encode_images(images).astype(np.float64)
        queries = np.concatenate([encoder.encode_texts(texts[s : s + 500]) for s in range(0, len(texts), 500)])
        scores = queries.astype(np.float64) @ features.T
        own = scores[rows, positives][:, None]
        assert recall((scores > own).sum(axis=1)) == pytest.approx(test["recall"][name], abs=0.011)
        if name == "small":  # small's top k_1 is the cascade's shortlist
            shortlist = np.argpartition(-scores, k_1, axis=1)[:, :k_1]
            listed = (shortlist == positives[:, None]).any(axis=1)
    # ... re-ranked by large: the positive's rank among the shortlist, or a miss when it is not there.
    ranks = np.where(listed, (np.take_along_axis(scores, shortlist, axis=1) > own).sum(axis=1), k_1)
    assert recall(ranks) == pytest.approx(test["recall"][f"small>large@{k_1}"], abs=0.011)


@pytest.mark.slow
def test_shipped_family_orders_and_cascades_on_held_out_images():
    """Measured here, on the first 1000 test images (200 clusters of near misses), 2000 caption queries."""
    report = train_shapes.evaluate(ASSETS_DIR, n_images=1000, k_1=20, rerank_k=10)
    recall = report["recall"]
    r1 = {name: recall[name]["R@1"] for name in BI_ENCODERS}
    assert r1["small"] < r1["medium"] < r1["large"], r1
    assert r1["large"] >= 60 and r1["large"] - r1["small"] >= 10, r1  # 15+ on the full gallery (see the report)
    cascade = recall["small>large@20"]  # k_1 = 2% of the gallery
    for k in ("R@1", "R@5", "R@10"):
        assert abs(cascade[k] - recall["large"][k]) <= 1.0, (k, cascade, recall["large"])
    assert recall["large>cross@10"]["R@1"] > r1["large"]


def _to_pixels_as_trained(images: np.ndarray, image_size: int) -> torch.Tensor:
    """The input transform the shipped weights were trained with, as first written (interpolate's area mode)."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="area")
    return (x - 0.5) / 0.25


@pytest.mark.parametrize("image_size", [32, 48, 64])
def test_to_pixels_is_the_transform_the_weights_were_trained_with_bit_for_bit(image_size):
    world_images = np.stack([item.image() for item in world.gallery(40, seed=2)])
    noise = np.random.default_rng(image_size).integers(0, 256, size=(64, 64, 64, 3), dtype=np.uint8)
    for images in (world_images, noise, noise[:1]):
        assert torch.equal(shapes.to_pixels(images, image_size), _to_pixels_as_trained(images, image_size))
    # one image at a time (preprocess) and a batch (preprocess_pixels) agree too
    single = torch.cat([shapes.to_pixels(noise[i : i + 1], image_size) for i in range(8)])
    assert torch.equal(single, shapes.to_pixels(noise[:8], image_size))


def test_world_array_reads_any_image_as_before():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    images = [rgb, rgb.convert("RGBA"), rgb.convert("L"), rgb.convert("P"), rgb.resize((100, 80)), rgb.convert("CMYK")]
    for image in images:
        expected = image.convert("RGB")
        if expected.size != (64, 64):
            expected = expected.resize((64, 64), Image.BOX)
        array = _world_array(image)
        assert array.shape == (64, 64, 3) and array.dtype == np.uint8 and array.flags.writeable
        assert np.array_equal(array, np.array(expected)), image.mode


def test_preprocess_pixels_equals_preprocess_row_by_row(quick_weights):
    rng = np.random.default_rng(5)
    for pixels in (rng.integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8),
                   rng.integers(0, 256, size=(3, 50, 70, 3), dtype=np.uint8)):  # fmt: skip
        for name in shapes.MODELS:
            encoder = shapes.load(name, quick_weights)
            expected = torch.stack([encoder.preprocess(Image.fromarray(row)) for row in pixels])
            read_only = pixels.copy()
            read_only.flags.writeable = False  # as a memory map hands them out
            assert torch.equal(encoder.preprocess_pixels(read_only), expected), name


def test_importing_the_world_the_encoders_and_the_trainer_does_nothing(tmp_path):
    code = (
        "import sys, cascade.world, cascade.encoders.shapes as shapes, tools.train_shapes; "
        "from cascade.encoders.shapes import weights; "
        "print(weights._read.cache_info().currsize, 'safetensors' in sys.modules)"
    )
    env = {**os.environ, "CASCADE_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "False"]  # no weights read
    assert not (tmp_path / "cache").exists()  # nothing written
