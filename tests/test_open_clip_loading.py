"""Loading an OpenCLIP checkpoint: every weight from the file, no random init spent first, torch left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cascade.encoders import create_encoder
from cascade.encoders.open_clip import _open_clip

ARCH = "tiny-vit-s"
TEXTS = ["a red circle", "two blue striped squares"]


@pytest.fixture
def counted_init(monkeypatch) -> list[str]:
    """Names of torch initialisers called on real tensors, as the modules that use them see them.

    (``torch.nn.init`` and ``nn.MultiheadAttention``'s own names; the MAC counts build towers on the
    meta device, which costs nothing and is not counted.)
    """
    calls: list[str] = []

    def counting(module, name):
        original = getattr(module, name)

        def init(tensor, *args, **kwargs):
            if tensor.device.type != "meta":
                calls.append(name)
            return original(tensor, *args, **kwargs)

        monkeypatch.setattr(module, name, init)

    for name in ("normal_", "kaiming_uniform_", "uniform_", "ones_", "zeros_"):
        counting(torch.nn.init, name)
    for name in ("xavier_uniform_", "constant_"):
        counting(torch.nn.modules.activation, name)
    create_encoder.cache_clear()
    yield calls
    create_encoder.cache_clear()


def test_a_checkpoint_loads_every_weight_and_skips_the_random_init(counted_init, tmp_path):
    open_clip = _open_clip()
    reference = open_clip.create_model(ARCH)  # initialised as usual: counts calls, which must be seen
    assert {"normal_", "kaiming_uniform_", "xavier_uniform_"} <= set(counted_init)
    weights = {key: value + 0.01 * (i + 1) for i, (key, value) in enumerate(reference.state_dict().items())}
    reference.load_state_dict(weights)
    path = tmp_path / "weights.safetensors"
    save_file(weights, path)

    counted_init.clear()
    loaded = create_encoder(f"openclip:{ARCH}@{path}")
    assert counted_init == [], "the random init ran before the checkpoint overwrote it"

    # Its embeddings are the reference model's with the same weights (buffers that no file holds included).
    reference.eval()
    pixels = torch.rand(2, 3, loaded.image_size, loaded.image_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        images = torch.nn.functional.normalize(reference.encode_image(pixels), dim=-1).numpy()
        texts = torch.nn.functional.normalize(reference.encode_text(open_clip.get_tokenizer(ARCH)(TEXTS)), dim=-1)
    np.testing.assert_array_equal(loaded.encode_pixels(pixels), images)
    np.testing.assert_array_equal(loaded.encode_texts(TEXTS), texts.numpy())


def test_the_seeded_random_init_is_whole_after_a_checkpoint_load(counted_init, tmp_path):
    before = create_encoder(f"openclip:{ARCH}@random").encode_texts(TEXTS)
    path = tmp_path / "weights.safetensors"
    save_file(_open_clip().create_model(ARCH).state_dict(), path)
    create_encoder(f"openclip:{ARCH}@{path}")
    create_encoder.cache_clear()
    counted_init.clear()
    after = create_encoder(f"openclip:{ARCH}@random").encode_texts(TEXTS)
    assert {"normal_", "kaiming_uniform_", "xavier_uniform_"} <= set(counted_init)  # our counters are back in place
    np.testing.assert_array_equal(after, before)
