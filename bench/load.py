"""Load: concurrent users of the app's /search API, through gradio_client, on loopback.

The app serves the offline shapes preset (5,000 images, [shapes:small ->
shapes:large], k = 15, 10; 500 images in a quick run) from a fresh database. After one warm-up search
(the gallery's build), ``clients`` threads, each with its own
``gradio_client.Client``, connect (the connect column; not counted in the duration), then send distinct
test captions for ``duration_s`` seconds (quick: 3 s, one torch thread only).
Reported: client-observed latency (p50, p95), throughput, errors,
and a check of the log: every answered query logged exactly once. Twice: with
one torch thread per search, and with torch's default (one per core); the app
runs several searches at once, so the default oversubscribes the cores.
Clients and server share this process and its cores, so the clients skip
loading the CA bundle into each request's SSL context (plain http; --ca-bundle
keeps gradio_client's default, about 60 ms of CPU per query). The client's
p50 is mostly queueing: 16 clients in a closed loop wait about 16 / (queries
per second). Per query on 2 cores (measured with /proc per thread): about
35 ms of CPU in the server's event loop (Gradio's postprocessing of five
gallery updates: building each component and checking each result image's
path against the static folders), 37 ms in the handler threads (the engine's
search, its features written to DuckDB, the JSON), 24 ms in native threads
(DuckDB's and torch's own).

    python -m bench.load [--quick]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLIENTS = 16


@dataclass(frozen=True)
class LoadRow:
    """What ``clients`` concurrent clients saw in ``duration_s`` seconds.

    Attributes:
        answered: searches that returned a result (no error in the page).
        errors: searches that raised or reported an error.
        logged_once: whether the log holds each answered query exactly once, and nothing else.
        server_ms_p50: median search time inside the engine (from the log): the rest of the
            client's latency is queueing (the app runs 4 searches at a time) and transport.
        connect_s: the clients' connecting, before the first query (not in ``duration_s``).
    """

    clients: int
    torch_threads: int
    duration_s: float
    answered: int
    errors: int
    p50_ms: float
    p95_ms: float
    server_ms_p50: float
    logged_once: bool
    connect_s: float = float("nan")

    @property
    def queries_per_s(self) -> float:
        return self.answered / self.duration_s


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Hammered:
    """What ``hammer`` saw: answered queries' latencies (ms) and texts, errors as (query, message), and times (s)."""

    latencies: list[float]
    answered: list[str]
    errors: list[tuple[str, str]]
    connect_s: float  # from the first client's start until every client had its config (no query sent yet)
    searching_s: float  # from then until the last client's last answer


def hammer(url: str, queries: Sequence[str], clients: int, duration_s: float, ca_bundle: bool = False) -> Hammered:
    """``clients`` threads connect, then send ``queries`` (dealt round-robin) until ``duration_s`` passes.

    The clock starts once every client is connected: 16 clients fetching the page's config take
    seconds in which no query is sent, and counting them would understate the queries per second.
    A client that cannot connect is one error with query ``"<connect>"``, and then no client sends anything.

    Args:
        ca_bundle: let each client load the CA bundle (gradio_client's default). gradio_client makes a new
            httpx client per request, and each loads the bundle into an SSL context: ~26 ms of CPU, 2.3 times
            a query, on this process's cores, for a plain-http loopback URL that never does TLS.
    """
    if not ca_bundle and not url.startswith("http://"):
        raise ValueError(f"certificates are skipped only for plain http, got {url}")
    from gradio_client import Client

    latencies: list[float] = []
    answered: list[str] = []
    errors: list[tuple[str, str]] = []
    lock = threading.Lock()
    began = time.monotonic()
    clock = {"start": began, "deadline": began + duration_s}

    def start_clock() -> None:  # run by the last client to connect, before any client goes on
        clock["start"] = time.monotonic()
        clock["deadline"] = clock["start"] + duration_s

    connected = threading.Barrier(clients, action=start_clock)

    def user(number: int) -> None:
        try:
            client = Client(url, verbose=False, download_files=False, ssl_verify=ca_bundle)
        except Exception as err:  # noqa: BLE001  (a client that cannot connect is an error, and frees the others)
            with lock:
                errors.append(("<connect>", f"{type(err).__name__}: {err}"))
            connected.abort()
            return
        try:
            connected.wait()  # start together: the load is concurrent from the first query
        except threading.BrokenBarrierError:
            return
        for query in queries[number::clients]:
            if time.monotonic() >= clock["deadline"]:
                return
            started = time.perf_counter()
            try:
                status, *rest = client.predict(query, api_name="/search")
                data = rest[-1]
                ok = "Error" not in str(status.get("value", "")) and data.get("query") == query
                message = "" if ok else f"status {status.get('value')!r}"
            except Exception as err:  # noqa: BLE001  (counted and reported: the point of a load test)
                ok, message = False, f"{type(err).__name__}: {err}"
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if ok:
                    latencies.append(elapsed)
                    answered.append(query)
                else:
                    errors.append((query, message))

    threads = [threading.Thread(target=user, args=(n,), name=f"client-{n}") for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Hammered(latencies, answered, errors, clock["start"] - began, time.monotonic() - clock["start"])


def run(quick: bool = False, clients: int = CLIENTS, ca_bundle: bool = False) -> tuple[LoadRow, ...]:
    """One row per torch thread setting: 1, then torch's default (one per core), in this process (quick: 1)."""
    import torch

    previous = torch.get_num_threads()
    rows = []
    try:
        for threads in dict.fromkeys((1,) if quick else (1, os.cpu_count() or 1)):
            torch.set_num_threads(threads)
            rows.append(measure(quick, clients, ca_bundle))
    finally:
        torch.set_num_threads(previous)
    return tuple(rows)


def measure(quick: bool = False, clients: int = CLIENTS, ca_bundle: bool = False) -> LoadRow:
    """Serve the shapes preset from a temporary database and measure ``clients`` concurrent users."""
    import torch

    import app
    from analysis.engine import Engine
    from analysis.replay import workload
    from analysis.store import Store
    from bench.lifetime import shapes_gallery

    duration_s = 3.0 if quick else 20.0
    corpus, image_root = shapes_gallery(quick, "test")
    with tempfile.TemporaryDirectory(prefix="bench-load-") as folder:
        engine = Engine(Store(Path(folder) / "load.duckdb"), world=lambda: corpus, world_root=image_root)
        try:
            engine.search(engine.default_choice(), "warm up: build the gallery")
            # Distinct texts: each appears once, so "logged exactly once" is checkable per text.
            queries = [f"{text} ({i})" for i, text in enumerate(workload(corpus, "uniform", 20_000, seed=1))]
            demo = app.launch(engine, port=free_port(), block=False)
            try:
                seen = hammer(demo.local_url, queries, clients, duration_s, ca_bundle)
            finally:
                demo.close()
            logged = engine.store.frame("SELECT query, latency_ms FROM queries WHERE query <> ?",
                                        ["warm up: build the gallery"])  # fmt: skip
        finally:
            engine.store.close()
    latencies, answered, errors = seen.latencies, seen.answered, seen.errors
    counts = logged["query"].value_counts()
    once = set(counts.index) == set(answered) and bool((counts == 1).all()) and len(answered) == len(set(answered))
    for query, message in errors[:5]:
        print(f"load: error for {query!r}: {message}", file=sys.stderr)
    return LoadRow(
        clients=clients,
        torch_threads=torch.get_num_threads(),
        duration_s=seen.searching_s,
        answered=len(answered),
        errors=len(errors),
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p95_ms=float(np.percentile(latencies, 95)) if latencies else float("nan"),
        server_ms_p50=float(logged["latency_ms"].median()) if len(logged) else float("nan"),
        logged_once=once,
        connect_s=seen.connect_s,
    )


def markdown(rows: Sequence[LoadRow]) -> str:
    lines = [
        "| clients | torch threads | connect (s) | duration (s) | answered | errors | queries/s | p50 (ms) | "
        "p95 (ms) | engine p50 (ms) | logged exactly once |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(f"| {row.clients} | {row.torch_threads} | {row.connect_s:.1f} | {row.duration_s:.0f} "
                     f"| {row.answered:,} | {row.errors} | {row.queries_per_s:.1f} | {row.p50_ms:.0f} "
                     f"| {row.p95_ms:.0f} | {row.server_ms_p50:.1f} "
                     f"| {'yes' if row.logged_once else 'NO'} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--ca-bundle", action="store_true", help="clients load the CA bundle per request (as before)")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick, clients=args.clients, ca_bundle=args.ca_bundle)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
