"""The Space's dress rehearsal: `python app.py` started as on a Space, met as its first visitors meet it.

A simulated hub (tests/hubsim.py) holds ``flickr30k-cpu``'s three architectures at full size with random
weights under their real tags (ViT-B-32, ViT-B-16, ViT-L-14) and a simulated Flickr30k of 1,000 generated
photos; ``python app.py`` runs as a subprocess with ``SPACE_ID`` set and ``HF_HUB_OFFLINE=1`` (the hub
already downloaded) on this machine's cores, torch's default threads. Measured from the process's start:
the page served (its first HTTP 200) and ready (the app's log line ``... is ready: Search is on``). Then,
through ``gradio_client`` as a visitor's page calls the app's ``/search``: the first query (each stage's
time split into decoding, preprocessing and forward passes: the trace's own ``decode_ms``, ``preprocess_ms``,
``forward_ms``), the same query again, a new query, and four first-time visitors (a client each) searching
at once with new queries. For reference, the bare forward passes of stage 2 and 3's encoders on k_1 and k_2
images (what a fresh Space's first query embeds), in a process of their own, measured between the searches: on a
busy machine the first query is read as a multiple of them, and projected onto an idle machine's rates.
Quick: ViT-B-32, ViT-B-16 and ViT-L-14 shrunk to two layers (registered in the app's process through a
wrapper, not ``python app.py``) and 40 photos; the figures are a smoke run's.

    python -m bench.space [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.front_door import SPACE_PRESET
from analysis.presets import get
from bench.space_app import App, BareForwards, Workload, write_hub, write_shrunk

VISITORS = 4
# Bare forward passes per image on this machine, idle, 2 cores, torch 2.13 (issue 25's table): what a rehearsal on a
# busy machine is projected onto. The shrunk models of a quick run are projected as if full size.
IDLE_MS_PER_IMAGE = {"ViT-B-16": 165.0, "ViT-L-14": 756.0}
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
    bare_ms: tuple[tuple[float, ...], ...]  # stage 2..'s bare forward passes over k_1, k_2, ... images (ms):
    # measured before the first query, between it and the repeated one, and after the new one
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


def run(quick: bool = False) -> SpaceReport:
    """Write the hub, start the app, measure; the temporary folder goes with everything in it."""
    workload = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-space-") as tmp:
        folder = Path(tmp)
        shrunk = write_shrunk(folder / "configs") if workload.shrunk else None
        began = time.perf_counter()
        write_hub(folder / "hf", workload, shrunk)
        hub_s = time.perf_counter() - began
        app = App(folder, shrunk)
        try:
            served_s, ready_s = app.served_s(), app.wait_ready()
            queries, visitors, bare = _visit(app, folder / "hf", shrunk)
        finally:
            app.stop()
    return SpaceReport(
        workload, get(SPACE_PRESET).ks, served_s, ready_s, queries, visitors, bare, hub_s, os.cpu_count() or 1
    )


def _visit(app: App, hf_home: Path, shrunk: Path | None) -> tuple[tuple[Query, ...], tuple[Query, ...], tuple]:
    """The queries, the visitors, and the bare forward passes measured before, between and after the queries."""
    from gradio_client import Client

    preset = get(SPACE_PRESET)
    bare = BareForwards(hf_home, shrunk, preset.levels, preset.ks)  # loaded after ready: the app is idle
    try:
        client = Client(app.url, verbose=False, download_files=False)
        before = bare.measure()
        first = search(client, "first query", QUERIES[0])
        between = bare.measure()
        again = search(client, "the same query again", QUERIES[0])
        new = search(client, "a new query", QUERIES[1])
        after = bare.measure()
    finally:
        bare.stop()
    visitors = visitors_at_once(app.url, VISITOR_QUERIES[:VISITORS])
    return (first, again, new), visitors, (before, between, after)


def _short(encoder: str) -> str:
    """``openclip:ViT-B-16@laion2b_s34b_b88k#rev-2bf8`` -> ``ViT-B-16``."""
    return encoder.split(":", 1)[-1].split("@")[0].split("#")[0]


def _embedded(query: Query) -> str:
    return " / ".join(f"{s.misses:,}" for s in query.stages)


def bare_for(report: SpaceReport, query: Query) -> tuple[float, ...]:
    """Stage 2..'s bare forward passes (ms) measured around ``query``: the mean of the measurement before and after."""
    before, between, after = report.bare_ms
    pair = (before, between) if query is report.queries[0] else (between, after)
    return tuple((x + y) / 2 for x, y in zip(*pair))


def projected_s(report: SpaceReport) -> float:
    """The first query on an idle machine: its time over its bare forward passes here, times those passes at the
    idle rates of ``IDLE_MS_PER_IMAGE`` (seconds)."""
    first = report.queries[0]
    idle_ms = sum(IDLE_MS_PER_IMAGE[_short(s.encoder)] * s.misses for s in first.stages[1:])
    return first.client_ms / sum(bare_for(report, first)) * idle_ms / 1000


def _where(report: SpaceReport) -> list[str]:
    """The first and the new query, stage by stage: the steps of embedding, against the bare forward passes."""
    lines = [
        "| query | stage | embedded | stage (ms) | decode | preprocess | forward | bare forward, interleaved "
        "(ms) | forward / bare |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for query in (report.queries[0], report.queries[2]):
        for stage, bare in zip(query.stages[1:], bare_for(report, query)):
            lines.append(
                f"| {query.what} | {_short(stage.encoder)} | {stage.misses} | {stage.latency_ms:,.0f} "
                f"| {stage.decode_ms:,.0f} | {stage.preprocess_ms:,.0f} | {stage.forward_ms:,.0f} | {bare:,.0f} "
                f"| {stage.forward_ms / bare:.2f} |"
            )
    return lines


def markdown(report: SpaceReport) -> str:
    w, first = report.workload, report.queries[0]
    lines = [
        "| moment | wall time, client (s) | in the engine (s) | embedded, stage 1 / 2 / 3 |",
        "|---|---:|---:|---|",
        f"| process start to page served (first HTTP 200) | {report.served_s:.1f} | | |",
        f"| process start to ready (Search on) | {report.ready_s:.1f} | | |",
    ]
    for q in (*report.queries, *report.visitors):
        lines.append(
            f'| {q.what}: "{q.query}" | {q.client_ms / 1000:.2f} | {q.engine_ms / 1000:.2f} | {_embedded(q)} |'
        )
    ratio = first.client_ms / sum(bare_for(report, first))
    models = "shrunk to two layers (smoke run)" if w.shrunk else "full size"
    idle = ", ".join(f"{name} {ms:g} ms" for name, ms in IDLE_MS_PER_IMAGE.items())
    return "\n".join(
        [
            *lines,
            "",
            *_where(report),
            "",
            f"**Workload.** `{SPACE_PRESET}` (ks {', '.join(map(str, report.ks))}) on a simulated hub: ViT-B-32, "
            f"ViT-B-16 and ViT-L-14 {models}, random weights under their real tags; {w.n_images:,} generated "
            f"photos (96 x 96 JPEG: decoding a real 500 x 375 Flickr photo costs more) in {w.n_shards} shards. "
            f"`python app.py` with `SPACE_ID` and `HF_HUB_OFFLINE=1` (the hub already downloaded), "
            f"{report.cores} torch threads (its default); the four visitors connect first, then search at the "
            f"same moment. Simulated hub written in {report.hub_s:.0f} s (not counted). Bare forward passes: stage "
            f"2 and 3's encoders in a process of their own, on k_1 and k_2 random images, measured before the first "
            f"query, between it and the repeated one, and after the new one; each query is set against the mean of "
            f"the two around it.",
            "",
            f"**The first query** took {ratio:.2f}x its bare forward passes. At the rates an idle 2-core machine "
            f"gave the bare forward passes in issue 25 ({idle} per image) that is {projected_s(report):.1f} s.",
        ]
    )


def summary(report: SpaceReport) -> list[tuple[str, str, str]]:
    first, again, new = report.queries
    latencies = ", ".join(f"{v.client_ms / 1000:.1f}" for v in report.visitors)
    ks = ", ".join(map(str, report.ks))
    ratio = first.client_ms / sum(bare_for(report, first))
    return [
        (
            "Space rehearsal: process start to page served / to ready (Search on)",
            f"{report.served_s:.1f} s / {report.ready_s:.0f} s",
            "",
        ),
        (
            f"Space rehearsal: first query (ks {ks}), the same again, a new one",
            f"{first.client_ms / 1000:.1f} s ({ratio:.2f}x its bare forward passes; {projected_s(report):.1f} s at "
            f"an idle machine's rates), {again.client_ms / 1000:.2f} s, {new.client_ms / 1000:.1f} s",
            "first <= 15 s on an idle machine",
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
