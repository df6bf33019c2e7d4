"""BLIP levels on a tiny random checkpoint: equal to transformers' own forward, MACs, loading, offline.

The original ITM scoring ([ENC], logit + ITC) is tested in test_blip_scoring.py, conversion in test_blip_convert.py.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from cascade.cache import MemoryCache
from cascade.corpus import Corpus
from cascade.cost import count_macs
from cascade.encoders import blip, blip_levels, create_encoder
from cascade.errors import ConfigError, EncoderNotFound, WeightsUnavailable
from cascade.search import CascadeSearcher
from tests.blip_tiny import (
    EMBED,
    HIDDEN,
    IMAGE_SIZE,
    LAYERS,
    VISION_TOKENS,
    save_tiny_checkpoint,
    tiny_vocab,
)
from tests.fakes import make_gallery

QUERIES = ["a red cat on the grass", "a man sitting in a blue car", "green bus"]


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("blip-tiny"))


@pytest.fixture(scope="module")
def reference(checkpoint_dir):
    """The same weights loaded by transformers alone: the model the levels must agree with."""
    model = transformers.BlipForImageTextRetrieval.from_pretrained(checkpoint_dir, use_safetensors=True).eval()
    tokenizer = transformers.BertTokenizer.from_pretrained(checkpoint_dir)
    # On the levels' device (CUDA where there is one), so both sides round the same way.
    return model.to(create_encoder(f"blip:{checkpoint_dir}").checkpoint.device), tokenizer


def random_images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(n)]


def test_names_resolve(checkpoint_dir):
    assert blip.parse_spec("base") == blip.BlipSpec("Salesforce/blip-itm-base-coco", False, "original")
    assert blip.parse_spec("large+itm") == blip.BlipSpec("Salesforce/blip-itm-large-coco", True, "original")
    assert blip.parse_spec("large+itm@original") == blip.parse_spec("large+itm")
    transformers_style = blip.parse_spec("base+itm@transformers")
    assert transformers_style == blip.BlipSpec("Salesforce/blip-itm-base-coco", True, "transformers")
    assert transformers_style.name == "blip:Salesforce/blip-itm-base-coco+itm@transformers"
    assert blip.parse_spec("large+itm@original").name == "blip:Salesforce/blip-itm-large-coco+itm"
    assert blip.parse_spec("Salesforce/blip-itm-base-flickr").source == "Salesforce/blip-itm-base-flickr"
    assert blip.parse_spec(f"{checkpoint_dir}+itm") == blip.BlipSpec(str(checkpoint_dir.resolve()), True)
    assert {"blip:base+itm", "blip:base+itm@transformers"} <= set(blip.known_names())
    with pytest.raises(EncoderNotFound, match="did you mean blip:base"):
        create_encoder("blip:bsae")
    with pytest.raises(EncoderNotFound, match="blip:base\\+itm@hf"):
        create_encoder("blip:base+itm@hf")
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        create_encoder("blip:/no/such/blip/checkpoint")


def test_local_directory_loads_as_both_levels(checkpoint_dir):
    bi = create_encoder(f"blip:{checkpoint_dir}")
    cross = create_encoder(f"blip:{checkpoint_dir}+itm")
    assert isinstance(bi, blip.BlipBiEncoder) and isinstance(cross, blip.BlipCrossEncoder)
    assert bi.checkpoint is cross.checkpoint  # one model in memory for both stages
    weights = bi.checkpoint.weights_id
    assert weights.startswith("file-") and len(weights) == len("file-") + 12
    assert bi.id == f"blip:{checkpoint_dir.resolve()}#{weights}"
    assert cross.id == f"blip:{checkpoint_dir.resolve()}+itm#{weights}"
    transformers_style = create_encoder(f"blip:{checkpoint_dir}+itm@transformers")
    assert transformers_style.id == f"blip:{checkpoint_dir.resolve()}+itm@transformers#{weights}"
    assert bi.text_tower_id == bi.id
    assert (bi.dim, bi.image_size, cross.image_size) == (EMBED, IMAGE_SIZE, IMAGE_SIZE)
    assert bi.preprocess(random_images(1)[0]).shape == (3, IMAGE_SIZE, IMAGE_SIZE)


def test_itc_embeddings_equal_model_forward(checkpoint_dir, reference):
    model, tokenizer = reference
    bi = create_encoder(f"blip:{checkpoint_dir}")
    images = random_images(4)
    image_embeddings = bi.encode_images(images, batch_size=3)
    text_embeddings = bi.encode_texts(QUERIES)
    assert image_embeddings.shape == (4, EMBED) and text_embeddings.shape == (3, EMBED)
    np.testing.assert_allclose(np.linalg.norm(image_embeddings, axis=1), 1.0, atol=1e-6)

    # The reference pads to the longest query only; the level pads to 35 tokens: same numbers.
    text = tokenizer(QUERIES, padding="longest", return_tensors="pt", return_token_type_ids=False).to(model.device)
    pixels = torch.stack([bi.preprocess(image) for image in images]).to(model.device)
    with torch.no_grad():
        cosine = model(text["input_ids"], pixels, use_itm_head=False, attention_mask=text["attention_mask"]).itm_score
    np.testing.assert_allclose(image_embeddings @ text_embeddings.T, cosine.cpu().numpy(), atol=1e-5)
    # The comparison is not between constants: scores vary over images and over queries.
    assert np.ptp(cosine.cpu().numpy(), axis=0).min() > 0.05 and np.ptp(cosine.cpu().numpy(), axis=1).min() > 0.05


def test_transformers_scoring_equals_model_forward(checkpoint_dir, reference, monkeypatch):
    """``+itm@transformers`` scores exactly as BlipForImageTextRetrieval(use_itm_head=True): [CLS], probability."""
    model, tokenizer = reference
    cross = create_encoder(f"blip:{checkpoint_dir}+itm@transformers")
    images = random_images(5, seed=1)
    features = cross.encode_images(images, batch_size=2)
    assert features.shape == (5, VISION_TOKENS, HIDDEN) and features.dtype == np.float32
    monkeypatch.setattr(blip_levels, "PAIR_BATCH", 2)  # several pair batches per query
    pixels = torch.stack([cross.preprocess(image) for image in images]).to(model.device)
    for query in QUERIES:
        scores = cross.score(query, features)
        text = tokenizer([query] * len(images), return_tensors="pt", return_token_type_ids=False).to(model.device)
        with torch.no_grad():
            logits = model(
                text["input_ids"], pixels, use_itm_head=True, attention_mask=text["attention_mask"]
            ).itm_score
        expected = logits.softmax(dim=-1)[:, 1].cpu().numpy()
        assert scores.shape == (5,) and scores.dtype == np.float32
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        assert np.ptp(expected) > 0.05
    with pytest.raises(ConfigError, match="shape"):
        cross.score(QUERIES[0], features[:, 1:])


def test_macs_equal_counts_on_the_modules(checkpoint_dir):
    bi = create_encoder(f"blip:{checkpoint_dir}")
    cross = create_encoder(f"blip:{checkpoint_dir}+itm@transformers")
    original = create_encoder(f"blip:{checkpoint_dir}+itm")
    model = bi.checkpoint.model
    pixels = torch.zeros(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert count_macs(model.vision_model, (pixels,)) == 3 * cross.image_macs > 0
    assert count_macs(blip.ImageEmbedder(model), (pixels,)) == 3 * bi.image_macs
    # The bi-encoder adds vision_proj on the CLS token only.
    assert bi.image_macs - cross.image_macs == HIDDEN * EMBED

    tokens = blip.query_tokens(model.config)
    ids = torch.zeros(4, tokens, dtype=torch.long)
    states = torch.zeros(4, VISION_TOKENS, HIDDEN)
    assert count_macs(blip.TextEmbedder(model), (ids, None)) == 4 * bi.text_macs > 0
    assert count_macs(blip.PairScorer(model), (ids, None, states)) == 4 * cross.pair_macs
    # What a pair adds to a text pass, per layer: cross-attention Q and O over the query tokens,
    # K and V over the vision tokens, QK^T and AV, and one more LayerNorm (4 MACs per element);
    # then the 2-way ITM head instead of text_proj.
    per_layer = 2 * tokens * HIDDEN * HIDDEN + 2 * VISION_TOKENS * HIDDEN * HIDDEN
    per_layer += 2 * tokens * VISION_TOKENS * HIDDEN + 4 * tokens * HIDDEN
    assert cross.pair_macs - bi.text_macs == LAYERS * per_layer + HIDDEN * 2 - HIDDEN * EMBED

    # The original scoring adds, per pair, vision_proj of the CLS state and the cosine; per query, the ITC text pass.
    text_embedding = torch.zeros(4, EMBED)
    assert count_macs(blip.MatchScorer(model), (ids, None, states, text_embedding)) == 4 * original.pair_macs
    assert original.pair_macs - cross.pair_macs == HIDDEN * EMBED + EMBED
    assert (original.query_macs, cross.query_macs) == (bi.text_macs, 0)


def test_paper_mode_counts_less_than_full_mode(checkpoint_dir):
    config = create_encoder(f"blip:{checkpoint_dir}").checkpoint.model.config
    paper, full = blip.count_blip_macs(config, mode="paper"), blip.count_blip_macs(config, mode="full")
    # Full mode adds the attention matmuls THOP misses: QK^T and AV in every vision layer.
    assert full.vision_macs - paper.vision_macs == LAYERS * 2 * VISION_TOKENS * VISION_TOKENS * HIDDEN


def test_cascade_meters_blip_stages(checkpoint_dir, tmp_path):
    bi = create_encoder(f"blip:{checkpoint_dir}")
    cross = create_encoder(f"blip:{checkpoint_dir}+itm@transformers")
    corpus = Corpus.from_folder(make_gallery(tmp_path / "gallery", 8)[0].parent)
    searcher = CascadeSearcher([bi, cross], corpus, cache=MemoryCache())
    build = searcher.build()
    assert build.image_macs == 8 * bi.image_macs

    first = searcher.search(QUERIES[0], ks=(5, 3))
    itc, itm = first.levels
    assert itc.text_macs == bi.text_macs and itc.image_macs == 0
    assert (itm.candidates, itm.misses) == (5, 5)
    assert itm.image_macs == 5 * cross.image_macs and itm.text_macs == 5 * cross.pair_macs
    # The re-ranker's order is the ITM probability order of the 5 candidates it was handed.
    features = cross.encode_images([corpus.load(image_id) for image_id in itc.ids])
    probabilities = cross.score(QUERIES[0], features)
    assert list(itm.ids) == [itc.ids[i] for i in np.argsort(-probabilities, kind="stable")[:3]]
    np.testing.assert_allclose(itm.scores, np.sort(probabilities)[::-1][:3], atol=1e-6)

    again = searcher.search(QUERIES[0], ks=(5, 3))
    assert again.levels[1].misses == 0 and again.levels[1].image_macs == 0
    assert again.levels[1].text_macs == 5 * cross.pair_macs  # pairs are paid on every query


def test_vocab_txt_alone_is_a_tokenizer(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "vocab-only", tokenizer_files="vocab.txt")
    bi = create_encoder(f"blip:{folder}")
    ids, mask = bi.checkpoint.tokenize(["a red cat"])
    vocab = tiny_vocab()
    assert ids[0, :5].tolist() == [vocab.index(w) for w in ("[CLS]", "a", "red", "cat", "[SEP]")]
    assert int(mask.sum()) == 5 and ids.shape[1] == blip.QUERY_TOKENS
    # No [ENC] in a bare vocab.txt: BLIP's layout puts it second after the vocabulary ([DEC], [ENC]).
    assert bi.checkpoint.enc_token_id == len(vocab) + 1


def test_missing_files_fail_with_what_is_missing(checkpoint_dir, tmp_path):
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(checkpoint_dir, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    with pytest.raises(WeightsUnavailable, match="tokenizer.json or vocab.txt"):
        create_encoder(f"blip:{no_tokenizer}")

    no_weights = tmp_path / "no-weights"
    shutil.copytree(checkpoint_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(WeightsUnavailable, match=r"lacks model.safetensors \(or pytorch_model.bin\)"):
        create_encoder(f"blip:{no_weights}+itm")


def test_pytorch_model_bin_is_read_as_tensors(checkpoint_dir, tmp_path):
    """A folder with only pytorch_model.bin loads (torch.load(weights_only=True)) and computes the same."""
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(checkpoint_dir, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    images = random_images(3, seed=4)
    from_bin = create_encoder(f"blip:{pickled}")
    from_safetensors = create_encoder(f"blip:{checkpoint_dir}")
    np.testing.assert_array_equal(from_bin.encode_images(images), from_safetensors.encode_images(images))
    assert from_bin.id != from_safetensors.id  # another file, another digest


def test_checkpoint_without_itm_head_is_refused(checkpoint_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "no-itm-head"
    shutil.copytree(checkpoint_dir, folder)
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("itm_head.")}, folder / "model.safetensors")
    with pytest.raises(WeightsUnavailable, match="itm_head"):
        create_encoder(f"blip:{folder}+itm")


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # huggingface_hub read HF_HOME when first imported (maybe by another test); point it here too.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    blip.load_checkpoint.cache_clear()


@pytest.fixture
def connections(monkeypatch) -> list[tuple]:
    """Every TCP connection attempted during the test (and still attempted: the real call runs)."""
    attempts: list[tuple] = []
    real = socket.create_connection

    def counted(address, *args, **kwargs):
        attempts.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counted)
    return attempts


def test_offline_missing_checkpoint_fails_without_touching_the_network(empty_hub_cache, monkeypatch, connections):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match="Salesforce/blip-itm-base-coco.*HF_HUB_OFFLINE") as err:
        create_encoder("blip:base")
    assert connections == []  # no probe, no download attempt: nothing to wait for
    assert "config.json, model.safetensors" in str(err.value) and "\n" not in str(err.value)


def test_unreachable_hub_is_probed_once_then_a_clear_error(empty_hub_cache, monkeypatch, connections):
    from huggingface_hub import constants

    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(WeightsUnavailable, match="blip-itm-large-coco.*unreachable"):
        create_encoder("blip:large+itm")
    # One probe, then the clear error: not huggingface_hub's retries with back-off (about 50 s per file).
    assert connections == [("127.0.0.1", 9)]
