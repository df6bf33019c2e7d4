"""CrispSearch: [bi-encoder top-k -> cross-encoder] against the cross-encoder over the whole gallery.

Measured on the shapes world, where a trained cross-encoder exists
(``analysis.crisp.compare``): MACs per warm query from the searches' own
traces, wall time as medians of interleaved queries, Recall@1/5/10 of both.
The cross-encoder alone scores all 5,000 images per query, so both sides run
on a subset of the captions spread over the gallery; the cascade's recall is
also given on 500 captions.

For BLIP (Salesforce's ITM checkpoints, whose weights are not needed for
this), the MAC side from the architectures (``analysis.crisp.compare_architectures``).

    python -m bench.crisp [--quick]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.crisp import CrispMacs, CrispResult, compare, compare_architectures
from bench import section_main
from bench.lifetime import shapes_gallery
from cascade.cache import MemoryCache
from cascade.encoders import create_encoder
from cascade.errors import CascadeError

SHAPES_PAIRS: tuple[tuple[str, int], ...] = (("shapes:small", 100), ("shapes:large", 20))  # each re-runs cross alone
CROSS = "shapes:cross"
# (bi-encoder variant, cross-encoder variant, gallery size, k): Flickr30k-1k and COCO-5k sized galleries.
BLIP_ROWS: tuple[tuple[str, str, int, int], ...] = (
    ("base", "base", 1_000, 16),
    ("base", "base", 1_000, 128),
    ("base", "base", 5_000, 128),
    ("base", "base", 5_000, 256),
    ("base", "large", 5_000, 128),
)


@dataclass(frozen=True)
class CrispReport:
    shapes: tuple[CrispResult, ...]
    blip: tuple[CrispMacs, ...]
    skipped: str = ""  # why the shapes rows could not run (their weights are missing)


def run(quick: bool = False) -> CrispReport:
    blip = tuple(compare_architectures(*row) for row in BLIP_ROWS[: 1 if quick else None])
    try:
        return CrispReport(shapes=_shapes_rows(quick), blip=blip)
    except CascadeError as err:
        return CrispReport(shapes=(), blip=blip, skipped=str(err))


def _shapes_rows(quick: bool) -> tuple[CrispResult, ...]:
    corpus, _ = shapes_gallery(quick, "test")
    cross, cache = create_encoder(CROSS), MemoryCache()  # one cache: the cross features are embedded once
    return tuple(
        compare(
            create_encoder(bi),
            cross,
            corpus,
            k,
            n_queries=6 if quick else 20,
            n_queries_all=100 if quick else 500,
            cache=cache,
        )
        for bi, k in SHAPES_PAIRS
    )


def _recall(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def markdown(report: CrispReport) -> str:
    lines = [
        "| bi-encoder -> cross-encoder | N | k | queries | R@1/5/10 cascade | R@1/5/10 cross alone | R@1/5/10 bi alone "
        "| cascade GMACs/query | cross alone GMACs/query | MACs speedup | cascade ms | cross alone ms | wall speedup |",
        "|---|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.shapes:
        lines.append(f"| {short_id(r.bi_encoder)} -> {short_id(r.cross_encoder)} | {r.n_images:,} | {r.k} | "
                     f"{r.n_queries} | {_recall(r.cascade_recall_subset)} | {_recall(r.alone_recall_subset)} | "
                     f"{_recall(r.bi_recall_subset)} | {r.cascade_query_macs / 1e9:.3f} | "
                     f"{r.alone_query_macs / 1e9:.2f} | {r.macs_speedup:.1f}x | {r.cascade_ms:.1f} | "
                     f"{r.alone_ms:.1f} | {r.wall_speedup:.1f}x |")  # fmt: skip
    if report.skipped:
        lines.append(f"\nSkipped the shapes rows: {report.skipped}")
    for r in report.shapes:
        lines.append(f"\nThe cascade {short_id(r.bi_encoder)} -> {short_id(r.cross_encoder)} (k = {r.k}) on "
                     f"{r.n_queries_all:,} captions: R@1/5/10 {_recall(r.cascade_recall_all)}.")  # fmt: skip
    lines += [
        "",
        "BLIP, MACs per warm query from the architectures (ITC of the first model ranks the gallery, the ITM head "
        "of the second re-ranks k; cached vision states, 35 query tokens):",
        "",
        "| ITC -> ITM | N | k | pair GMACs | cascade GMACs/query | ITM alone GMACs/query | MACs speedup |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in report.blip:
        lines.append(f"| {m.bi_encoder} -> {m.cross_encoder} | {m.n_images:,} | {m.k} | {m.pair_macs / 1e9:.2f} | "
                     f"{m.cascade_query_macs / 1e9:,.0f} | {m.alone_query_macs / 1e9:,.0f} | "
                     f"{m.macs_speedup:.1f}x |")  # fmt: skip
    return "\n".join(lines)


def short_id(encoder_id: str) -> str:
    return encoder_id.split("@")[0]


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("crisp", __doc__, run, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
