"""The Space's dress rehearsal: `python app.py` started as on a Space, met as its first visitors meet it.

A simulated hub (tests/hubsim.py) holds ``flickr30k-cpu``'s three architectures at full size with random
weights under their real tags (ViT-B-32, ViT-B-16, ViT-L-14) and a simulated Flickr30k of 1,000 generated
photos; ``python app.py`` runs as a subprocess with ``SPACE_ID`` set and ``HF_HUB_OFFLINE=1`` (the hub
already downloaded) on this machine's cores, torch's default threads. Measured from the process's start:
the page served (its first HTTP 200) and ready (the app's log line ``... is ready: Search is on``). Then,
through ``gradio_client`` as a visitor's page calls the app's ``/search``: the first query (each stage's
time split into decoding, preprocessing and forward passes: the trace's own ``decode_ms``, ``preprocess_ms``,
``forward_ms``), the same query again, a new query, and four first-time visitors (a client each) searching
at once with new queries. For reference, the bare forward passes of stage 2 and 3's encoders, in this process
after the app has stopped, on as many images as the first query embedded. Quick: ViT-B-32, ViT-B-16 and
ViT-L-14 shrunk to two layers (registered in the app's process through a wrapper, not ``python app.py``) and
40 photos; the figures are a smoke run's.

    python -m bench.space [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.front_door import SPACE_PRESET
from analysis.presets import get
from bench.space_app import ROOT, App, Workload, write_hub, write_shrunk

VISITORS = 4
QUERIES = ("a red dog on a blue background", "a photo of a yellow kite")  # the first (also repeated), a new one
VISITOR_QUERIES = tuple(
    f"a {c} {t}" for c, t in (("green", "boat"), ("white", "ball"), ("black", "bicycle"), ("blue", "frisbee"))
)


FULL, QUICK = Workload(1_000, 4, shrunk=False), Workload(40, 2, shrunk=True)


@dataclass(frozen=True)
class Stage:
    """One stage of one search, as the app's ``/search`` answered it (ms)."""

    encoder: str
    misses: int
    latency_ms: float
    decode_ms: float
    preprocess_ms: float
    forward_ms: float


@dataclass(frozen=True)
class Query:
    """One search as a client saw it: its wall time (ms) and the app's stages."""

    what: str
    query: str
    client_ms: float
    stages: tuple[Stage, ...]

    @property
    def engine_ms(self) -> float:
        return sum(s.latency_ms for s in self.stages)


@dataclass(frozen=True)
class SpaceReport:
    workload: Workload
    ks: tuple[int, ...]
    served_s: float  # process start -> the page's first HTTP 200
    ready_s: float  # process start -> the readiness log line
    queries: tuple[Query, ...]  # first, repeated, new
    visitors: tuple[Query, ...]  # at once, each a first-time visitor with a new query
    bare_ms_per_image: tuple[tuple[str, float], ...]  # (encoder, bare forward ms per image) for stages 2..
    hub_s: float  # writing the simulated hub, for context
    cores: int  # the app's torch threads: torch's default, one per core


def search(client, what: str, query: str) -> Query:
    """One ``/search`` through ``client``; raises unless the app answered it."""
    started = time.perf_counter()
    status, *rest = client.predict(query, api_name="/search")
    client_ms = (time.perf_counter() - started) * 1000.0
    data = rest[-1]
    if not isinstance(data, dict) or data.get("query") != query:
        raise RuntimeError(f"/search did not answer {query!r}: {status}")
    keys = ("encoder", "misses", "latency_ms", "decode_ms", "preprocess_ms", "forward_ms")
    return Query(what, query, client_ms, tuple(Stage(*(s[key] for key in keys)) for s in data["stages"]))


def visitors_at_once(url: str, queries: Sequence[str]) -> tuple[Query, ...]:
    """A first-time visitor per query: each connects (its own client), then all search at the same moment."""
    from gradio_client import Client

    clients = [Client(url, verbose=False, download_files=False) for _ in queries]
    answers: list[Query | Exception] = [RuntimeError("no answer")] * len(queries)
    together = threading.Barrier(len(queries))

    def visit(number: int) -> None:
        together.wait()
        try:
            answers[number] = search(clients[number], f"visitor {number + 1}", queries[number])
        except Exception as err:  # noqa: BLE001  (raised below, in the calling thread)
            answers[number] = err

    threads = [threading.Thread(target=visit, args=(n,)) for n in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for answer in answers:
        if isinstance(answer, Exception):
            raise answer
    return tuple(answers)


def bare_forward_ms(hf_home: Path, shrunk: Path | None, first: Query) -> tuple[tuple[str, float], ...]:
    """ms per image of stage 2.. encoders' bare ``encode_pixels`` on as many random images as ``first`` embedded
    (one forward pass, as a query's misses are), after a warm-up pass: what the stages' forward passes cost alone.
    In a process of its own, with torch's default threads as the app has them."""
    from tests import hubsim

    code = (
        "import json, sys, time, torch\n"
        "from cascade._torchvision_compat import ensure_torchvision_compat; ensure_torchvision_compat()\n"
        "from open_clip import factory; from pathlib import Path; from cascade.encoders import create_encoder\n"
        "if sys.argv[2]: factory.add_model_config(Path(sys.argv[2]))\n"
        "out = []\n"
        "for name, n in json.loads(sys.argv[1]):\n"
        "    e = create_encoder(name); x = torch.rand(n, 3, 224, 224); e.encode_pixels(x[:1])\n"
        "    t = time.perf_counter(); e.encode_pixels(x); out.append((name, (time.perf_counter() - t) * 1e3 / n))\n"
        "print(json.dumps(out))"
    )
    wanted = [(s.encoder.split("#")[0], s.misses) for s in first.stages[1:] if s.misses]  # the name, not its rev
    command = [sys.executable, "-c", code, json.dumps(wanted), str(shrunk or "")]
    out = subprocess.run(command, cwd=ROOT, env=hubsim.hub_env(hf_home), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"the bare forward passes failed: {out.stderr.strip().splitlines()[-1:]}")
    return tuple((name, ms) for name, ms in json.loads(out.stdout.strip().splitlines()[-1]))


def run(quick: bool = False) -> SpaceReport:
    """Write the hub, start the app, measure; the temporary folder goes with everything in it."""
    from gradio_client import Client

    workload = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-space-") as tmp:
        folder = Path(tmp)
        shrunk = write_shrunk(folder / "configs") if workload.shrunk else None
        began = time.perf_counter()
        write_hub(folder / "hf", workload, shrunk)
        hub_s = time.perf_counter() - began
        app = App(folder, shrunk)
        try:
            served_s = app.served_s()
            ready_s = app.wait_ready()
            client = Client(app.url, verbose=False, download_files=False)
            first = search(client, "first query", QUERIES[0])
            again = search(client, "the same query again", QUERIES[0])
            new = search(client, "a new query", QUERIES[1])
            visitors = visitors_at_once(app.url, VISITOR_QUERIES[:VISITORS])
        finally:
            app.stop()
        bare = bare_forward_ms(folder / "hf", shrunk, first)
    return SpaceReport(
        workload,
        get(SPACE_PRESET).ks,
        served_s,
        ready_s,
        (first, again, new),
        visitors,
        bare,
        hub_s,
        os.cpu_count() or 1,
    )


def _short(encoder: str) -> str:
    """``openclip:ViT-B-16@laion2b_s34b_b88k#rev-2bf8`` -> ``ViT-B-16``."""
    return encoder.split(":", 1)[-1].split("@")[0].split("#")[0]


def _stage_cells(query: Query) -> str:
    """``ViT-B-16: 30 embedded, 5,012 ms (decode 3 + preprocess 40 + forward 4,900)``, a line per stage."""
    parts = []
    for s in query.stages:
        split = f" (decode {s.decode_ms:,.0f} + preprocess {s.preprocess_ms:,.0f} + forward {s.forward_ms:,.0f})"
        parts.append(f"{_short(s.encoder)}: {s.misses:,} embedded, {s.latency_ms:,.0f} ms{split if s.misses else ''}")
    return "<br>".join(parts)


def markdown(report: SpaceReport) -> str:
    w = report.workload
    lines = [
        "| moment | wall time, client (s) | in the engine (s) | by stage |",
        "|---|---:|---:|---|",
        f"| process start to page served (first HTTP 200) | {report.served_s:.1f} | | |",
        f"| process start to ready (Search on) | {report.ready_s:.1f} | | |",
    ]
    for q in (*report.queries, *report.visitors):
        lines.append(
            f'| {q.what}: "{q.query}" | {q.client_ms / 1000:.2f} | {q.engine_ms / 1000:.2f} | {_stage_cells(q)} |'
        )
    first = report.queries[0]
    bare = "; ".join(f"{_short(name)} {ms:,.0f} ms per image" for name, ms in report.bare_ms_per_image)
    forward = {_short(s.encoder): s.forward_ms / s.misses for s in first.stages[1:] if s.misses}
    ratios = ", ".join(f"{_short(name)} {forward[_short(name)] / ms:.2f}x" for name, ms in report.bare_ms_per_image)
    models = "shrunk to two layers (smoke run)" if w.shrunk else "full size"
    return "\n".join(
        [
            *lines,
            "",
            f"**Workload.** `{SPACE_PRESET}` (ks {', '.join(map(str, report.ks))}) on a simulated hub: ViT-B-32, "
            f"ViT-B-16 and ViT-L-14 {models}, random weights under their real tags; {w.n_images:,} generated "
            f"photos (96 x 96 JPEG: decoding a real 500 x 375 Flickr photo costs more) in {w.n_shards} shards. "
            f"`python app.py` with `SPACE_ID` and `HF_HUB_OFFLINE=1` (the hub already downloaded), "
            f"{report.cores} torch threads (its default); the four visitors connect first, then search at the "
            f"same moment. Simulated hub written in {report.hub_s:.0f} s (not counted).",
            "",
            f"**Bare forward passes** of the first query's misses, in a process of their own: {bare}. The first "
            f"query's forward passes in the app ran at {ratios} of those.",
        ]
    )


def summary(report: SpaceReport) -> list[tuple[str, str, str]]:
    first, again, new = report.queries
    latencies = ", ".join(f"{v.client_ms / 1000:.1f}" for v in report.visitors)
    ks = ", ".join(map(str, report.ks))
    return [
        (
            "Space rehearsal: process start to page served / to ready (Search on)",
            f"{report.served_s:.1f} s / {report.ready_s:.0f} s",
            "",
        ),
        (
            f"Space rehearsal: first query (ks {ks}), the same again, a new one",
            f"{first.client_ms / 1000:.1f} s, {again.client_ms / 1000:.2f} s, {new.client_ms / 1000:.1f} s",
            "first <= 15 s",
        ),
        (f"Space rehearsal: {len(report.visitors)} first-time visitors searching at once", f"{latencies} s", ""),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.space", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.quick)
    print(markdown(report))
    for name, result, target in summary(report):
        print(f"- {name}: {result}{f' (target {target})' if target else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
