"""BLIP's own ITM scoring: [ENC] first, ranked by match logit + ITC cosine; no ties from saturated probabilities."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from cascade.cache import MemoryCache
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade.search import CascadeSearcher
from tests.blip_tiny import save_tiny_checkpoint, tiny_vocab
from tests.fakes import make_gallery
from tests.test_blip import QUERIES

ENC_ID = len(tiny_vocab()) + 1  # after the vocabulary and [DEC], as BLIP's init_tokenizer adds them
CLS_ID = tiny_vocab().index("[CLS]")


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("blip-scoring"))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Corpus:
    return Corpus.from_folder(make_gallery(tmp_path_factory.mktemp("gallery") / "g", 8)[0].parent)


def _first_tokens(cross, query: str, features: np.ndarray) -> dict[str, set[int]]:
    """First input id of every text-encoder pass, split into ITM passes (with images) and ITC passes."""
    seen: dict[str, set[int]] = {"itm": set(), "itc": set()}

    def hook(module, args, kwargs):
        kind = "itm" if kwargs.get("encoder_hidden_states") is not None else "itc"
        seen[kind].update(kwargs["input_ids"][:, 0].tolist())

    handle = cross.checkpoint.model.text_encoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        cross.score(query, features)
    finally:
        handle.remove()
    return seen


def test_the_itm_pass_starts_with_enc(checkpoint_dir, gallery):
    original = create_encoder(f"blip:{checkpoint_dir}+itm")
    features = original.encode_images([gallery.load(i) for i in gallery.ids[:5]])
    assert original.checkpoint.tokenizer.convert_tokens_to_ids("[ENC]") == ENC_ID
    assert _first_tokens(original, QUERIES[0], features) == {"itm": {ENC_ID}, "itc": {CLS_ID}}
    transformers_style = create_encoder(f"blip:{checkpoint_dir}+itm@transformers")
    assert _first_tokens(transformers_style, QUERIES[0], features) == {"itm": {CLS_ID}, "itc": set()}


def _by_hand(checkpoint_dir: Path, query: str, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(match logit with [ENC] first, ITC cosine) per image, from transformers' own forward."""
    model = transformers.BlipForImageTextRetrieval.from_pretrained(checkpoint_dir).eval()
    tokenizer = transformers.BertTokenizer.from_pretrained(checkpoint_dir)
    text = tokenizer([query] * len(pixels), return_tensors="pt", return_token_type_ids=False)
    enc_ids = text["input_ids"].clone()
    enc_ids[:, 0] = ENC_ID
    with torch.no_grad():
        logits = model(enc_ids, pixels, attention_mask=text["attention_mask"]).itm_score
        cosine = model(text["input_ids"], pixels, use_itm_head=False, attention_mask=text["attention_mask"]).itm_score
    return logits[:, 1].numpy(), cosine[:, 0].numpy()


def test_the_ranking_follows_match_logit_plus_itc_cosine(checkpoint_dir, gallery):
    bi = create_encoder(f"blip:{checkpoint_dir}")
    cross = create_encoder(f"blip:{checkpoint_dir}+itm")
    searcher = CascadeSearcher([bi, cross], gallery, cache=MemoryCache())
    searcher.build()
    for query in QUERIES:
        itc, itm = searcher.search(query, ks=(6, 4)).levels
        pixels = torch.stack([cross.preprocess(gallery.load(i)) for i in itc.ids]).cpu()
        logit, cosine = _by_hand(checkpoint_dir, query, pixels)
        expected = logit + cosine
        assert list(itm.ids) == [itc.ids[i] for i in np.argsort(-expected, kind="stable")[:4]]
        np.testing.assert_allclose(itm.scores, np.sort(expected)[::-1][:4], atol=1e-5)
        # The ITC term is the bi-encoder's own score of the same candidates.
        np.testing.assert_allclose(np.sort(cosine)[::-1], itc.scores, atol=1e-5)
        # Billed: the query's ITC embedding once (the bi-encoder's own text pass of this checkpoint), then 6 pairs.
        assert cross.query_macs == bi.text_macs > 0
        assert itm.text_macs == bi.text_macs + 6 * cross.pair_macs


def test_tied_probabilities_no_longer_decide_the_order(checkpoint_dir, gallery, tmp_path):
    """With a confident ITM head every probability is exactly 1.0 in float32; logit + cosine still orders."""
    from safetensors.torch import load_file, save_file

    confident = tmp_path / "confident"
    shutil.copytree(checkpoint_dir, confident)
    weights = load_file(confident / "model.safetensors")
    weights["itm_head.bias"] = torch.tensor([-40.0, 40.0])  # a match margin of ~80: softmax rounds to 1
    save_file(weights, confident / "model.safetensors", metadata={"format": "pt"})

    bi = create_encoder(f"blip:{confident}")
    searchers = {
        suffix: CascadeSearcher([bi, create_encoder(f"blip:{confident}{suffix}")], gallery, cache=MemoryCache())
        for suffix in ("+itm", "+itm@transformers")
    }
    reordered = 0
    for query in QUERIES:
        itc, tied = searchers["+itm@transformers"].search(query, ks=(6, 4)).levels
        assert tied.scores == (1.0,) * 4  # saturated: every candidate ties ...
        assert tied.ids == itc.ids[:4]  # ... so the incoming ITC order decides, not the re-ranker
        _, ranked = searchers["+itm"].search(query, ks=(6, 4)).levels
        assert len(set(ranked.scores)) == 4 and list(ranked.scores) == sorted(ranked.scores, reverse=True)
        reordered += ranked.ids != itc.ids[:4]
    assert reordered > 0  # the re-ranker's own order differs from ITC's for some query
