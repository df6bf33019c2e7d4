"""MAC counting: closed forms for transformers, paper vs full mode, no leftovers on the module."""

import json

import pytest
import torch
from torch import nn

from cascade import cost, units  # cascade.cost runs the torchvision shim: open_clip, timm, BLIP import below
from cascade.encoders import count_image_macs, create_encoder
from cascade.errors import ConfigError, EncoderNotFound


def vit_closed_form(image_size, patch, width, layers, mlp_width, embed_dim, mode="full"):
    """open_clip VisionTransformer MACs by hand (THOP conventions: LayerNorm with affine = 4 * numel).

    full: patch conv + ln_pre + per block (2 LN, q/k/v/out projections, QK^T and AV, MLP) + ln_post + proj.
    paper: what THOP sees: the patch conv and the MLP Linears only (open_clip's LayerNorm is a
    subclass, MultiheadAttention has no rule, ``proj`` is a bare parameter).
    """
    n_patches = (image_size // patch) ** 2
    tokens = n_patches + 1  # + class token
    conv = n_patches * width * 3 * patch**2
    mlp = 2 * tokens * width * mlp_width
    if mode == "paper":
        return conv + layers * mlp
    norm = 4 * tokens * width
    attention = 4 * tokens * width**2 + 2 * tokens**2 * width
    return conv + norm + layers * (2 * norm + attention + mlp) + norm + width * embed_dim


TINY_VIT = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 24, "head_width": 8, "mlp_ratio": 2.0, "patch_size": 8},
    "text_cfg": {"context_length": 12, "vocab_size": 100, "width": 16, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_openclip_arch(tmp_path_factory):
    """A tiny ViT registered with open_clip under a name no real config uses."""
    import open_clip

    path = tmp_path_factory.mktemp("openclip-configs") / "TinyViT-cost-test.json"
    path.write_text(json.dumps(TINY_VIT))
    open_clip.add_model_config(path)
    return "TinyViT-cost-test"


def test_gmacs_converts_units():
    assert units.gmacs(17_579_188_224) == pytest.approx(17.579188224)
    assert units.gmacs(0) == 0.0


def test_tiny_openclip_vit_matches_closed_form(tiny_openclip_arch):
    shape = dict(image_size=32, patch=8, width=24, layers=2, mlp_width=48, embed_dim=16)
    assert cost.openclip_image_size(tiny_openclip_arch) == 32
    assert cost.openclip_image_macs(tiny_openclip_arch, "full") == vit_closed_form(**shape)
    assert cost.openclip_image_macs(tiny_openclip_arch, "paper") == vit_closed_form(**shape, mode="paper")


def test_tiny_openclip_text_tower_matches_closed_form(tiny_openclip_arch):
    tokens, width, layers, embed_dim = 12, 16, 2, 16
    norm = 4 * tokens * width
    block = 2 * norm + 4 * tokens * width**2 + 2 * tokens**2 * width + 2 * tokens * width * 4 * width
    # The token embedding is a lookup (0 MACs); ln_final runs on every token, the projection on one.
    expected = layers * block + norm + width * embed_dim
    assert cost.openclip_text_macs(tiny_openclip_arch, "full") == expected
    assert cost.openclip_text_macs(tiny_openclip_arch, "paper") == layers * 2 * tokens * width * 4 * width


@pytest.mark.parametrize(
    ("arch", "shape"),
    [
        ("ViT-B-16", dict(image_size=224, patch=16, width=768, layers=12, mlp_width=3072, embed_dim=512)),
        ("ViT-L-14", dict(image_size=224, patch=14, width=1024, layers=24, mlp_width=4096, embed_dim=768)),
        ("ViT-g-14", dict(image_size=224, patch=14, width=1408, layers=40, mlp_width=6144, embed_dim=1024)),
    ],
)
def test_real_openclip_vits_match_closed_form(arch, shape):
    assert cost.openclip_image_macs(arch, "full") == vit_closed_form(**shape)
    assert cost.openclip_image_macs(arch, "paper") == vit_closed_form(**shape, mode="paper")


def test_vit_b16_full_mode_is_the_known_17_6_gmacs():
    # The usual figure for ViT-B/16 at 224 px is ~17.6 GMACs; THOP alone reports ~11.3.
    assert units.gmacs(cost.openclip_image_macs("ViT-B-16", "full")) == pytest.approx(17.58, abs=0.01)
    assert units.gmacs(cost.openclip_image_macs("ViT-B-16", "paper")) == pytest.approx(11.27, abs=0.01)


def test_multihead_attention_counts_projections_and_matmuls():
    # Cross-attention with kdim/vdim != embed_dim and batch_first: every term has its own size.
    mha = nn.MultiheadAttention(embed_dim=16, num_heads=4, kdim=10, vdim=6, batch_first=True)
    batch, n_query, n_key = 3, 5, 7
    query, key, value = torch.randn(batch, n_query, 16), torch.randn(batch, n_key, 10), torch.randn(batch, n_key, 6)
    projections = batch * (n_query * 16 * 16 + n_key * 10 * 16 + n_key * 6 * 16 + n_query * 16 * 16)
    matmuls = 2 * batch * n_query * n_key * 16
    assert cost.count_macs(mha, (query, key, value), "full") == projections + matmuls
    assert cost.count_macs(mha, (query, key, value), "paper") == 0  # THOP has no rule for it


class _FunctionalAttention(nn.Module):
    """Self-attention written with bare ops, the way open_clip / timm / BLIP write theirs."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)  # counted by THOP: must not be counted again
        self.in_proj = nn.Parameter(torch.randn(width, width))  # bare parameter: only the mode sees it

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = torch.matmul(q, k.transpose(-1, -2))
        mixed = torch.bmm(scores.softmax(-1), v)
        fused = nn.functional.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1))
        return mixed @ self.in_proj + nn.functional.linear(fused.squeeze(1), self.in_proj)


def test_full_mode_counts_bare_matmuls_once():
    batch, tokens, width = 2, 5, 8
    module = _FunctionalAttention(width)
    x = torch.randn(batch, tokens, width)
    qkv = batch * tokens * width * 3 * width
    matmul_pair = batch * tokens * tokens * width  # QK^T or AV
    bare_projection = batch * tokens * width * width
    assert cost.count_macs(module, (x,), "paper") == qkv
    assert cost.count_macs(module, (x,), "full") == qkv + 2 * matmul_pair + 2 * matmul_pair + 2 * bare_projection


class _AddMatmul(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 4))
        self.bias = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        return torch.addmm(self.bias, x, self.weight) + torch.baddbmm(self.bias, x[None], self.weight[None])


def test_full_mode_counts_addmm_and_baddbmm():
    assert cost.count_macs(_AddMatmul(), (torch.randn(3, 6),), "full") == 2 * 3 * 6 * 4
    assert cost.count_macs(_AddMatmul(), (torch.randn(3, 6),), "paper") == 0


def test_custom_attention_block_counts_like_multihead_attention(tiny_openclip_arch):
    # open_clip's own Attention (F.linear + scaled_dot_product_attention) must cost what
    # nn.MultiheadAttention costs in the default block.
    from open_clip.model import _build_vision_tower

    towers = {}
    for block_type in ("default", "custom"):
        vision_cfg = {**TINY_VIT["vision_cfg"], "block_type": block_type}
        with torch.device("meta"):
            towers[block_type] = _build_vision_tower(TINY_VIT["embed_dim"], vision_cfg)
    pixels = torch.empty(1, 3, 32, 32, device="meta")
    default, custom = (cost.count_macs(towers[b], (pixels,), "full") for b in ("default", "custom"))
    assert default == custom == cost.openclip_image_macs(tiny_openclip_arch, "full")


def test_timm_vit_matches_closed_form():
    import timm

    with torch.device("meta"):
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    pixels = torch.empty(1, 3, 224, 224, device="meta")
    tokens, width = 197, 192
    norm = 4 * tokens * width
    block = 2 * norm + 4 * tokens * width**2 + 2 * tokens**2 * width + 2 * tokens * width * 4 * width
    expected = 196 * width * 3 * 16**2 + 12 * block + norm  # patch conv, blocks, final norm; no head
    assert cost.count_macs(model, (pixels,), "full") == expected


def test_blip_vision_tower_matches_closed_form():
    tokens, width, layers, mlp_width = 577, 768, 12, 3072
    norm = 4 * tokens * width
    attention_matmuls = 2 * tokens**2 * width
    block = 2 * norm + 4 * tokens * width**2 + attention_matmuls + 2 * tokens * width * mlp_width
    # post_layernorm runs twice: on all tokens, then again on the pooled class token.
    expected = 576 * width * 3 * 16**2 + layers * block + norm + 4 * width
    assert cost.blip_vision_macs("base", "full") == expected
    # THOP sees BLIP's Linear projections and nn.LayerNorm, only the attention matmuls escape it.
    assert cost.blip_vision_macs("base", "paper") == expected - layers * attention_matmuls


def test_full_mode_never_counts_less_and_convnext_barely_changes():
    for arch in ("convnext_base_w", "convnext_xxlarge"):
        paper, full = cost.openclip_image_macs(arch, "paper"), cost.openclip_image_macs(arch, "full")
        assert paper < full < paper * 1.005  # only the LayerNorm subclasses are added: no attention
    for variant in ("base", "large"):
        assert cost.blip_vision_macs(variant, "full") > cost.blip_vision_macs(variant, "paper")


def test_count_macs_leaves_no_hooks_or_buffers():
    mha = nn.MultiheadAttention(8, 2)
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), _FunctionalAttention(8))
    before = {name: dict(m._buffers) for name, m in model.named_modules()}
    for mode in ("paper", "full"):
        cost.count_macs(model, (torch.randn(2, 3, 8),), mode)
        cost.count_macs(mha, (torch.randn(3, 1, 8),) * 3, mode)
    for module in [*model.modules(), *mha.modules()]:
        assert "total_ops" not in module._buffers and "total_params" not in module._buffers
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert {name: dict(m._buffers) for name, m in model.named_modules()} == before
    assert model.training  # restored


@pytest.mark.parametrize("mode", ["paper", "full"])
def test_a_failing_forward_pass_leaves_nothing_behind(mode):
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.LayerNorm(4), nn.Linear(5, 5)))
    model[1].eval()  # mixed training flags must come back as they were
    hook_calls = []
    model[0].register_forward_hook(lambda *_: hook_calls.append(1))  # the caller's own hook stays
    with pytest.raises(RuntimeError):
        cost.count_macs(model, (torch.randn(1, 4),), mode)  # the second Linear wants 5 features
    for module in model.modules():
        assert "total_ops" not in module._buffers and "total_params" not in module._buffers
    assert [len(m._forward_hooks) for m in model.modules()] == [0, 1, 0, 0, 0]
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False, False, False]
    model[0](torch.randn(1, 4))
    assert len(hook_calls) == 2


def test_bad_mode_and_unknown_names_raise():
    with pytest.raises(ValueError, match="paper"):
        cost.count_macs(nn.Linear(2, 2), (torch.randn(1, 2),), "exact")
    with pytest.raises(EncoderNotFound, match="ViT-Q-99"):
        cost.openclip_image_macs("ViT-Q-99")
    with pytest.raises(EncoderNotFound, match="huge"):
        cost.blip_vision_macs("huge")


def test_native_image_sizes():
    assert cost.openclip_image_size("ViT-B-16") == 224
    assert cost.openclip_image_size("convnext_xxlarge") == 256


@pytest.mark.parametrize("mode", ["paper", "full"])
def test_meta_device_counts_equal_cpu_counts(mode):
    # THOP's counters build CPU DoubleTensors from shapes; they must work on meta tensors too.
    def build():
        return nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(32, 10), nn.LayerNorm(10), nn.Softmax(dim=-1),
        )  # fmt: skip

    cpu = cost.count_macs(build(), (torch.randn(2, 3, 16, 16),), mode)
    with torch.device("meta"):
        model, pixels = build(), torch.empty(2, 3, 16, 16)
    assert cost.count_macs(model, (pixels,), mode) == cpu > 2 * 14 * 14 * 8 * 27


@pytest.mark.parametrize(
    ("name", "image_size"),
    [("shapes:small", 32), ("shapes:large", 64), ("shapes:cross", 64), ("openclip:tiny-vit-s@random", 32)],
)
def test_the_registry_counts_an_image_like_the_built_encoder(name, image_size):
    """Each backend counts MACs from the name alone; the count is what the built encoder bills per image."""
    assert count_image_macs(name, "full", image_size) == create_encoder(name).image_macs
    assert count_image_macs(name, "paper", image_size) <= count_image_macs(name, "full", image_size)


def test_the_registry_counts_blip_presets_and_refuses_a_foreign_resolution():
    for spec in ("blip:base", "blip:base+itm", "blip:Salesforce/blip-itm-base-coco"):
        assert count_image_macs(spec, "paper", 384) == cost.blip_vision_macs("base", "paper", 384)
    assert count_image_macs("blip:large", "full", 224) == cost.blip_vision_macs("large", "full", 224)
    with pytest.raises(ConfigError, match="runs at 32 px, not 64 px"):
        count_image_macs("shapes:small", "full", 64)
    with pytest.raises(ConfigError, match="runs at 224 px"):
        count_image_macs("openclip:ViT-B-16@laion2b_s34b_b88k", "full", 336)
    with pytest.raises(EncoderNotFound):
        count_image_macs("blip:/no/such/checkpoint", "full", 384)
    with pytest.raises(EncoderNotFound):
        count_image_macs("nope:small", "full", 32)
