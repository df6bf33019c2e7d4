"""convert-blip: BLIP's and LAVIS's own .pth retrieval checkpoints, converted and served as blip:OUT_DIR."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import cascade_cli
from cascade.encoders import create_encoder
from cascade.encoders.blip_convert import convert_checkpoint
from tests.blip_tiny import IMAGE_SIZE, original_state_dict, save_original_checkpoint, tiny_tokenizer, tiny_vocab
from tests.test_blip import QUERIES, random_images


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    """A bert-base-uncased stand-in: a bare vocab.txt, as that repository has it."""
    folder = tmp_path_factory.mktemp("bert")
    (folder / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    return folder


def _expected_scores(model, pixels: torch.Tensor, query: str) -> dict[str, np.ndarray]:
    """Both ITM scorings and the ITC cosines of ``query`` against ``pixels``, from the model's own forward."""
    tokenizer = tiny_tokenizer()
    text = tokenizer([query] * len(pixels), padding="max_length", max_length=35, return_tensors="pt",
                     return_token_type_ids=False)  # fmt: skip
    enc_ids = text["input_ids"].clone()
    enc_ids[:, 0] = tokenizer.convert_tokens_to_ids("[ENC]")
    with torch.no_grad():
        cosine = model(text["input_ids"], pixels, use_itm_head=False, attention_mask=text["attention_mask"]).itm_score
        cls_logits = model(text["input_ids"], pixels, attention_mask=text["attention_mask"]).itm_score
        enc_logits = model(enc_ids, pixels, attention_mask=text["attention_mask"]).itm_score
    cosine = cosine[:, 0]  # the same query in every row
    return {
        "cosine": cosine.numpy(),
        "transformers": cls_logits.softmax(dim=-1)[:, 1].numpy(),
        "original": (enc_logits[:, 1] + cosine).numpy(),
    }


def _check_served_equal(out: Path, model) -> None:
    bi = create_encoder(f"blip:{out}")
    images = random_images(4, seed=3)
    pixels = torch.stack([bi.preprocess(image) for image in images]).cpu()
    model = model.to("cpu")
    for query in QUERIES:
        expected = _expected_scores(model, pixels, query)
        served = bi.encode_images(images) @ bi.encode_texts([query])[0]
        np.testing.assert_allclose(served, expected["cosine"], atol=1e-5)
        for suffix, scoring in (("+itm", "original"), ("+itm@transformers", "transformers")):
            cross = create_encoder(f"blip:{out}{suffix}")
            np.testing.assert_allclose(cross.score(query, cross.encode_images(images)), expected[scoring], atol=1e-5)
        assert np.ptp(expected["original"]) > 0.05 and np.ptp(expected["cosine"]) > 0.05


def test_lavis_checkpoint_converts_through_the_command_line(tmp_path, bert_dir, capsys):
    source = tmp_path / "blip_coco_retrieval.pth"
    model = save_original_checkpoint(source, layout="lavis")
    out = tmp_path / "converted"
    assert cascade_cli.main(["convert-blip", str(source), str(out), "--tokenizer", str(bert_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # Counted here from the model: every online tensor is written; the momentum copies are of the four
    # encoders and projections (the ITM head has none), plus the momentum text tower's position_ids.
    online = model.state_dict()
    momentum = sum(1 for key in online if not key.startswith("itm_head.")) + 1
    assert report["tensors"] == len(online)
    assert dict(report["dropped"]) == {"momentum encoders": momentum, "queues": 4, "temp": 1, "position_ids": 1}
    assert report["unrecognised"] == [] and report["image_size"] == IMAGE_SIZE and report["variant"] == "custom"
    config = json.loads((out / "config.json").read_text())
    assert config["vision_config"]["layer_norm_eps"] == 1e-6 and config["text_config"]["num_attention_heads"] == 12
    assert config["text_config"]["vocab_size"] == len(tiny_vocab()) + 2
    _check_served_equal(out, model)


def test_blip_checkpoint_converts_and_reports_unknown_keys(tmp_path, bert_dir):
    source = tmp_path / "model_base_retrieval_coco.pth"
    model = save_original_checkpoint(source, layout="blip", seed=2)
    checkpoint = torch.load(source, weights_only=True)
    checkpoint["model"]["visual_encoder.some_new_buffer"] = torch.zeros(3)
    torch.save(checkpoint, source)
    report = convert_checkpoint(source, tmp_path / "out", bert_dir)
    assert report.unrecognised == ("visual_encoder.some_new_buffer",)
    assert dict(report.dropped)["queues"] == 4  # ptr_queue, BLIP's name for LAVIS's queue_ptr
    _check_served_equal(tmp_path / "out", model)


class RunsCode:
    """Unpickling this would create ``marker``: proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _captioning_checkpoint(path: Path) -> None:
    model = transformers.BlipForImageTextRetrieval(
        __import__("tests.blip_tiny", fromlist=["original_layout_config"]).original_layout_config()
    )
    state = {key.replace("text_encoder.", "text_decoder.bert."): value
             for key, value in original_state_dict(model).items()
             if not key.startswith(("itm_head", "vision_proj", "text_proj")) and "_m." not in key}  # fmt: skip
    torch.save({"model": state}, path)


@pytest.mark.parametrize(
    "damage", ["corrupt", "corrupt 2", "truncated", "pickled code", "captioning", "no tokenizer", "no tokenizer dir"]
)
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, bert_dir, damage, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    source, out, marker = tmp_path / "in.pth", tmp_path / "out", tmp_path / "ran"
    tokenizer = ["--tokenizer", str(bert_dir)]
    expected = {
        "corrupt": "not a readable PyTorch checkpoint",
        "corrupt 2": "not a readable PyTorch checkpoint",
        "truncated": "not a readable PyTorch checkpoint",
        "pickled code": "pickled objects besides tensors",
        "captioning": "no ITM head",
        "no tokenizer": "bert-base-uncased is not in the HF cache; pass --tokenizer DIR",
        "no tokenizer dir": "has neither vocab.txt nor tokenizer.json",
    }[damage]
    if damage.startswith("corrupt"):  # seeded: random bytes break the unpickler in a different way for each seed
        source.write_bytes(random.Random(damage).randbytes(4096))
    elif damage == "truncated":
        save_original_checkpoint(source)
        source.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    elif damage == "pickled code":
        torch.save({"model": RunsCode(marker)}, source)
    elif damage == "captioning":
        _captioning_checkpoint(source)
    else:
        save_original_checkpoint(source)
        tokenizer = [] if damage == "no tokenizer" else ["--tokenizer", str(tmp_path)]
    code = cascade_cli.main(["convert-blip", str(source), str(out), *tokenizer])
    err = capsys.readouterr().err
    assert code == 1 and expected in err and err.count("\n") == 1, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert not marker.exists()


def test_a_non_empty_out_dir_is_refused(tmp_path, bert_dir, capsys):
    source = tmp_path / "in.pth"
    save_original_checkpoint(source)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert cascade_cli.main(["convert-blip", str(source), str(tmp_path / "out"), "--tokenizer", str(bert_dir)]) == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
