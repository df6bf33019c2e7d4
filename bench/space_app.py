"""The dress rehearsal's machinery (bench/space.py): the simulated hub, and the app started as a Space starts it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from analysis.front_door import READY_LOG, SPACE_PRESET
from analysis.presets import PAPER_TAGS
from bench.load import free_port

ROOT = Path(__file__).resolve().parent.parent
FLICKR = "clip-benchmark/wds_flickr30k"
MODELS = ("ViT-B-32", "ViT-B-16", "ViT-L-14")
TIMEOUT_S = 1200.0  # start to ready, at most (a full run's level-1 build is about a minute on 2 cores)


@dataclass(frozen=True)
class Workload:
    n_images: int
    n_shards: int
    shrunk: bool  # all three architectures at two layers (quick): a smoke run


# -- the simulated hub -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _configs(folder: Path | None) -> Iterator[None]:
    """open_clip builds the configs of ``folder`` (shrunk ones) inside the block only; nothing when None."""
    if folder is None:
        yield
        return
    from open_clip import factory

    factory.add_model_config(folder)
    try:
        yield
    finally:
        factory._MODEL_CONFIG_PATHS.remove(folder)
        factory._rescan_model_configs()


def write_shrunk(folder: Path) -> Path:
    """Each of ``MODELS`` at two layers and width 128 (same patch and input size), as tests/hubsim.py shrinks."""
    from cascade._torchvision_compat import ensure_torchvision_compat

    ensure_torchvision_compat()  # before open_clip (cascade/_torchvision_compat.py says why)
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    for arch in MODELS:
        config = json.loads(json.dumps(open_clip.get_model_config(arch)))
        config["embed_dim"] = 64
        config["vision_cfg"].update(layers=2, width=128, head_width=64)
        config["text_cfg"].update(layers=2, width=128, heads=2)
        (folder / f"{arch}.json").write_text(json.dumps(config))
    return folder


def write_hub(hf_home: Path, workload: Workload, shrunk: Path | None) -> None:
    """The three models (random weights, real tags) and the Flickr30k shards, as a downloaded hub leaves them."""
    from tests import hubsim

    hub = hf_home / "hub"
    with _configs(shrunk):
        for seed, arch in enumerate(MODELS):
            hubsim.put_openclip(hub, arch, PAPER_TAGS[arch], seed=seed, shrunk=False)  # ``shrunk``'s configs, or full
    hubsim.put_wds_dataset(hub, FLICKR, workload.n_images, n_shards=workload.n_shards, seed=1)


# -- the app as a Space starts it ----------------------------------------------------------------------------

_WRAPPER = (
    "import sys; from cascade._torchvision_compat import ensure_torchvision_compat; ensure_torchvision_compat(); "
    "from open_clip import factory; from pathlib import Path; "
    "factory.add_model_config(Path(sys.argv[1])); import app; sys.exit(app.main(sys.argv[2:]))"
)


class App:
    """``python app.py`` in a subprocess with a Space's environment; its log lines read as they come, timed."""

    def __init__(self, folder: Path, shrunk: Path | None) -> None:
        from tests import hubsim

        self.port = free_port()
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--db", str(folder / "space.duckdb")]
        command = (
            [sys.executable, "app.py", *args]
            if shrunk is None
            else [sys.executable, "-c", _WRAPPER, str(shrunk), *args]
        )
        env = hubsim.hub_env(folder / "hf") | {"SPACE_ID": "bench/cascade-search", "GRADIO_ANALYTICS_ENABLED": "False"}
        env["CASCADE_CACHE_DIR"] = str(folder / "cascade")
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.ready_s, self.served_preset = float("nan"), ""
        threading.Thread(target=self._read, name="app-log", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if READY_LOG in line and not self.ready.is_set():
                self.served_preset = line.split(READY_LOG)[0].split()[-1]
                self.ready_s = time.perf_counter() - self.started
                self.ready.set()

    def served_s(self) -> float:
        """Seconds from the process's start to the page's first HTTP 200 (polled every 50 ms)."""
        while time.perf_counter() - self.started < TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited ({self.process.returncode}): {self.tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"the page was not served within {TIMEOUT_S:.0f} s")

    def wait_ready(self) -> float:
        while not self.ready.wait(1.0):
            if self.process.poll() is not None or time.perf_counter() - self.started > TIMEOUT_S:
                raise RuntimeError(f"the app never said it was ready: {self.tail()}")
        if self.served_preset != SPACE_PRESET:
            raise RuntimeError(f"the app switched to {self.served_preset}: {self.tail()}")
        return self.ready_s

    def tail(self) -> str:
        return " | ".join(self.lines[-5:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_BARE = (
    "import json, sys, time, torch\n"
    "from cascade._torchvision_compat import ensure_torchvision_compat; ensure_torchvision_compat()\n"
    "from open_clip import factory; from pathlib import Path; from cascade.encoders import create_encoder\n"
    "if sys.argv[2]: factory.add_model_config(Path(sys.argv[2]))\n"
    "wanted = [(create_encoder(name), n) for name, n in json.loads(sys.argv[1])]\n"
    "batches = [(e, torch.rand(n, 3, e.image_size, e.image_size)) for e, n in wanted]\n"
    "for e, x in batches: e.encode_pixels(x[:1])\n"
    "print('loaded', flush=True)\n"
    "for _ in sys.stdin:\n"
    "    out = []\n"
    "    for e, x in batches:\n"
    "        t = time.perf_counter(); e.encode_pixels(x); out.append((time.perf_counter() - t) * 1e3)\n"
    "    print(json.dumps(out), flush=True)\n"
)


class BareForwards:
    """A process of its own holding stage 2..'s encoders, loaded from the same hub: on each ``measure()`` it runs
    each encoder's bare ``encode_pixels`` once on as many random images as a fresh Space's first query embeds there
    (k_1, k_2, ...), with torch's default threads as the app has them. Measured between the app's searches, so a
    search and its reference see the machine at nearly the same moment."""

    def __init__(self, hf_home: Path, shrunk: Path | None, levels: tuple[str, ...], ks: tuple[int, ...]) -> None:
        from tests import hubsim

        self.wanted = list(zip(levels[1:], ks[:-1]))  # stage i + 1 embeds the k_i images it is handed
        command = [sys.executable, "-c", _BARE, json.dumps(self.wanted), str(shrunk or "")]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=hubsim.hub_env(hf_home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if self.process.stdout.readline().strip() != "loaded":
            raise RuntimeError("the bare forward passes' process did not start")

    def measure(self) -> tuple[float, ...]:
        """ms of each stage's bare forward pass over its k images, in stage order."""
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return tuple(json.loads(self.process.stdout.readline()))

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(60)
