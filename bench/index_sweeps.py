"""``bench.index``'s FAISS builds (``Sweep``: one build, searched at several settings) and its flags' parsers."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Sweep:
    """One FAISS build, made once per N, searched at each of ``values`` of its search parameter ``param``.

    Attributes:
        build: parameters set before adding (``efConstruction=200``), part of the build's key.
        shortlists: none, or the multiples of k the index returns for an exact re-rank from the matrix
            (each searched at every value).
    """

    factory: str
    param: str
    values: tuple[int, ...]
    build: str = ""
    shortlists: tuple[int, ...] = ()

    def spec(self, value: int, shortlist: int = 0) -> str:
        return f"faiss:{self.factory}@{self.param}={value}" + (f"+rerank={shortlist}" if shortlist else "")

    @property
    def label(self) -> str:
        """The build: its factory and its build parameters, e.g. ``HNSW32 efConstruction=200``."""
        return " ".join(filter(None, [self.factory, self.build]))

    def method(self, value: int, shortlist: int = 0) -> str:
        return (
            self.spec(value) + (f" {self.build}" if self.build else "") + (f" rerank={shortlist}k" if shortlist else "")
        )

    def key(self, n: int) -> tuple[str, str, str]:
        """The build's key (``auto``'s own for a build without parameters, so ``auto`` loads it): two builds of
        one factory with other build parameters never share an index file."""
        return ("bench", str(n), self.factory + (f"/{self.build}" if self.build else ""))


def parse_sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def parse_skip(text: str) -> list[tuple[int, str]]:
    """``N:PATTERN[,N:PATTERN...]`` -> [(N, PATTERN)]; "" -> nothing skipped."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        n, sep, pattern = part.partition(":")
        if not sep or not pattern or not n.replace("_", "").isdigit():
            raise argparse.ArgumentTypeError(f"--skip-at takes N:PATTERN (e.g. 4000000:HNSW), got {part!r}")
        pairs.append((int(n.replace("_", "")), pattern))
    return pairs


def parse_sweeps(text: str) -> list[Sweep]:
    """``FACTORY@PARAM=V1/V2/...[ build:NAME=VALUE][ rerank:R1/R2];...`` -> sweeps, e.g.
    ``HNSW32@efSearch=128/512 build:efConstruction=200;IVF4096,PQ128x4fs@nprobe=16/64 rerank:10/40``."""
    sweeps = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        head, *extras = part.split()
        factory, _, setting = head.removeprefix("faiss:").partition("@")
        param, _, values = setting.partition("=")
        options = dict(extra.partition(":")[::2] for extra in extras)
        try:
            if set(options) - {"build", "rerank"} or not param:
                raise ValueError(part)
            shortlists = tuple(int(v) for v in options["rerank"].split("/")) if "rerank" in options else ()
            sweep = Sweep(
                factory, param, tuple(int(v) for v in values.split("/")), options.get("build", ""), shortlists
            )
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--sweeps takes FACTORY@PARAM=V1/V2[ build:NAME=VALUE][ rerank:R1/R2], got {part!r}"
            ) from None
        sweeps.append(sweep)
    return sweeps


def sweep_text(sweep: Sweep) -> str:
    extras = (f" build:{sweep.build}" if sweep.build else "") + (
        " rerank:" + "/".join(map(str, sweep.shortlists)) if sweep.shortlists else ""
    )
    return f"{sweep.factory}@{sweep.param}=" + "/".join(map(str, sweep.values)) + extras
