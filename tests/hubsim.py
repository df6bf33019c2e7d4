"""A simulated Hugging Face hub: a cache laid out exactly as huggingface_hub writes one.

``HF_HOME/hub/{models,datasets}--ORG--NAME/`` holds ``blobs/<sha256>`` (the bytes),
``snapshots/<commit>/<path>`` (relative symlinks to the blobs) and ``refs/main`` (the
commit). With ``HF_HUB_OFFLINE=1`` the libraries' own download functions
(``hf_hub_download``, open_clip's ``download_pretrained``) then resolve every name from
here, which is the path a Space takes after its first download. Product code cannot
tell this cache from one the real hub filled.

What is simulated: random weights for the real architectures under their real repo ids
(float16 safetensors, which open_clip loads into its float32 model), and generated
photos with captions in CLIP_benchmark's webdataset format. ``SHRUNK`` lists
architectures whose simulated weights match a shrunken config registered under the
same name (``register_shrunk``): ViT-L-14 and ViT-g-14 at full size would cost minutes
and gigabytes per test run. The code path is the one a real tag takes: the same tag,
repo id, file name and open_clip factory; only the config open_clip finds for the name
differs, and only in a process that called ``register_shrunk``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import tarfile
from pathlib import Path

from PIL import Image, ImageDraw

from cascade._torchvision_compat import ensure_torchvision_compat  # noqa: E402  (before open_clip/transformers: see cascade/_torchvision_compat.py)

ensure_torchvision_compat()

SHRUNK_DIR = Path(__file__).resolve().parent / "shrunk_configs"
SHRUNK = ("ViT-L-14", "ViT-g-14")

_COLOURS = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (40, 60, 200), "yellow": (230, 210, 40),
            "white": (240, 240, 240), "black": (20, 20, 20)}  # fmt: skip
_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "png": "PNG"}
_THINGS = ("dog", "frisbee", "ball", "kite", "boat", "bicycle")


def commit_of(repo_id: str) -> str:
    """A stable 40-digit commit hash per repository (as the hub's are)."""
    return hashlib.sha1(repo_id.encode()).hexdigest()


def put_file(hub_cache: Path, repo_type: str, repo_id: str, filename: str, data: bytes) -> Path:
    """Write one file of ``repo_id`` as huggingface_hub caches it; returns the snapshot path."""
    blob = _repo_root(hub_cache, repo_type, repo_id) / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return _link(hub_cache, repo_type, repo_id, filename, blob)


def _repo_root(hub_cache: Path, repo_type: str, repo_id: str) -> Path:
    return Path(hub_cache) / f"{repo_type}s--{repo_id.replace('/', '--')}"


def _link(hub_cache: Path, repo_type: str, repo_id: str, filename: str, blob: Path) -> Path:
    """``snapshots/<commit>/<filename>`` -> ``blob`` (relative, as huggingface_hub links), and ``refs/main``."""
    root, commit = _repo_root(hub_cache, repo_type, repo_id), commit_of(repo_id)
    link = root / "snapshots" / commit / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return link


def register_shrunk() -> None:
    """Make open_clip build the shrunken configs for the ``SHRUNK`` names (this process only)."""
    import open_clip

    open_clip.add_model_config(SHRUNK_DIR)


@contextlib.contextmanager
def _shrunk_for_now(active: bool):
    """The shrunken configs registered only inside the block: the calling process (pytest) keeps the real ones."""
    if not active:
        yield
        return
    from open_clip import factory

    register_shrunk()
    try:
        yield
    finally:
        factory._MODEL_CONFIG_PATHS.remove(SHRUNK_DIR)
        factory._rescan_model_configs()


def put_openclip(hub_cache: Path, arch: str, tag: str, seed: int = 0, shrunk: bool | None = None) -> Path:
    """Random weights of ``arch`` under the repo id and file name open_clip resolves ``tag`` to.

    Args:
        shrunk: build the ``SHRUNK`` config (default: when ``arch`` is in ``SHRUNK``); False: full size always
            (bench/space.py's dress rehearsal).
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    repo_id = open_clip.get_pretrained_cfg(arch, tag)["hf_hub"].rstrip("/")
    with torch.random.fork_rng(devices=[]), _shrunk_for_now(arch in SHRUNK if shrunk is None else shrunk):
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None)
    tensors = {name: value.detach().to(torch.float16).contiguous() for name, value in model.state_dict().items()}
    # Written straight to disk, then named by its digest: a full-size ViT-B is 300 MB, which as bytes in
    # memory first would cost a second copy and a second write (about a second each).
    blobs = _repo_root(hub_cache, "model", repo_id) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / f"{arch}.incomplete"
    save_file(tensors, partial)
    with open(partial, "rb") as handle:
        blob = partial.rename(blobs / hashlib.file_digest(handle, "sha256").hexdigest())
    return _link(hub_cache, "model", repo_id, "open_clip_model.safetensors", blob)


def photo(rng: random.Random, size: int = 96, image_format: str = "JPEG") -> tuple[bytes, list[str]]:
    """One generated photo and its five captions (a coloured thing on a coloured ground)."""
    (ground, ground_rgb), (colour, colour_rgb) = rng.sample(sorted(_COLOURS.items()), 2)
    thing = rng.choice(_THINGS)
    image = Image.new("RGB", (size, size), ground_rgb)
    draw = ImageDraw.Draw(image)
    x, y, r = rng.randint(20, size - 20), rng.randint(20, size - 20), rng.randint(8, 18)
    draw.ellipse((x - r, y - r, x + r, y + r), fill=colour_rgb)
    for _ in range(30):  # noise, so no two photos share bytes
        px, py = rng.randrange(size), rng.randrange(size)
        draw.point((px, py), fill=tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 90} if image_format != "PNG" else {}))
    captions = [
        f"a {colour} {thing} on a {ground} background",
        f"a photo of a {colour} {thing}",
        f"{colour} {thing}, {ground} ground",
        f"the {thing} is {colour}",
        f"a {ground} scene with a {thing}",
    ]
    return buffer.getvalue(), captions


def wds_shards(n_images: int, n_shards: int, seed: int, extension: str = "jpg") -> list[bytes]:
    """CLIP_benchmark-style tar shards: ``KEY.<extension>`` + ``KEY.txt`` (captions, one per line)."""
    rng = random.Random(seed)
    shards = []
    per_shard = -(-n_images // n_shards)
    for shard in range(n_shards):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for index in range(shard * per_shard, min(n_images, (shard + 1) * per_shard)):
                data, captions = photo(rng, image_format=_FORMATS[extension])
                for name, payload in ((f"s{index:07d}.{extension}", data),
                                      (f"s{index:07d}.txt", "\n".join(captions).encode())):  # fmt: skip
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        shards.append(buffer.getvalue())
    return shards


def put_wds_dataset(hub_cache: Path, repo_id: str, n_images: int, n_shards: int = 2, seed: int = 0,
                    extension: str = "jpg") -> None:  # fmt: skip
    """A retrieval dataset repo as CLIP_benchmark's ``build_wds_dataset`` reads it."""
    put_file(hub_cache, "dataset", repo_id, "dataset_type.txt", b"retrieval\n")
    shards = wds_shards(n_images, n_shards, seed, extension)
    put_file(hub_cache, "dataset", repo_id, "test/nshards.txt", f"{len(shards)}\n".encode())
    for index, data in enumerate(shards):
        put_file(hub_cache, "dataset", repo_id, f"test/{index}.tar", data)


def hub_env(hf_home: Path) -> dict[str, str]:
    """The environment a subprocess needs to see ``hf_home`` as its Hugging Face home, offline."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def write_shrunk_configs() -> None:
    """(Re)write ``SHRUNK_DIR``: each ``SHRUNK`` architecture at 2 layers and width 128, same patch and input size."""
    import open_clip

    SHRUNK_DIR.mkdir(exist_ok=True)
    for arch in SHRUNK:
        config = json.loads(json.dumps(open_clip.get_model_config(arch)))
        config["embed_dim"] = 64
        config["vision_cfg"].update(layers=2, width=128, head_width=64)
        config["text_cfg"].update(layers=2, width=128, heads=2)
        (SHRUNK_DIR / f"{arch}.json").write_text(json.dumps(config, indent=2) + "\n")
