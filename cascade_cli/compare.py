"""``cascade compare``: every configuration a preset compares, evaluated on its test gallery.

This is the command behind the README's recall table (it was ``python -m analysis.evaluate``).
Rows stream as they finish; ``--json`` prints one object per line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from analysis import presets, progress, report
from analysis.cascades import Cascades, compare
from analysis.evaluate import JSON_KEYS, EvalResult
from analysis.galleries import GalleryKind, GallerySource
from analysis.sweep import sweep_k1
from cascade import units
from cascade.encoders import create_encoder
from cascade_cli import common


def register(sub) -> None:
    p = common.command(sub, "compare", run, "Recall@1/5/10 and cost of every configuration of a preset", db=False)
    common.preset_arg(p)
    p.add_argument("--limit", type=common.positive_int, help="evaluate only the first N captions")
    p.add_argument(
        "--sweep-k1",
        type=common.comma_ints,
        metavar="K,K,...",
        help="instead: sweep k_1 of the preset's [first, last] cascade (e.g. 5,10,15,20,50,100); "
        "R@1/5/10 and lifetime image cost per k_1, and the smallest k_1 within 1 point of the last "
        "level alone",
    )
    common.report_arg(p)


def run(args: argparse.Namespace) -> int:
    preset = presets.get(args.preset)
    if args.sweep_k1:
        return _sweep(args, preset)
    cascades = Cascades.in_memory(preset)  # the evaluator counts a fresh system, whatever a cache held

    def step(index: int, levels: Sequence[str]) -> progress.Step:
        return progress.Step(f"{index + 1}/{len(preset.comparisons)} {' > '.join(levels)}", progress.Unit.QUERIES)

    rows = []
    with common.bars(args) as bars:
        for evaluation in compare(cascades, preset.comparisons, limit=args.limit, progress=step, bars=bars):
            common.emit(args, _json_row(evaluation.result), _text_row(evaluation.result))
            rows.append(evaluation.result)
    if args.report:
        title = f"Compare: the {preset.name} preset's configurations"
        common.write_report(args.report, report.build_report(title, _inputs(args), report.evaluation_sections(rows)))
    return 0


def _inputs(args: argparse.Namespace) -> dict:
    return {
        "command": "cascade compare",
        "preset": args.preset,
        "captions": args.limit or "all",
        "k_1 sweep": args.sweep_k1 or "",
    }


def _json_row(row: EvalResult) -> dict:
    values = row.as_json()
    return {key: round(values[key], 4) if isinstance(values[key], float) else values[key] for key in JSON_KEYS}


def _text_row(row: EvalResult) -> str:
    recalls = "  ".join(f"R@{k} {value:5.2f}" for k, value in row.recall.items())
    return (
        f"{' > '.join(row.levels):60s} ks={list(row.ks)!s:14s} {recalls}  "
        f"image GMACs {units.gmacs(row.image_macs):10.2f}  alpha {row.alpha:.3f}"
    )


def _sweep(args: argparse.Namespace, preset) -> int:
    first, last = create_encoder(preset.levels[0]), create_encoder(preset.levels[-1])
    k_last = max(10, preset.ks[-1])
    with common.bars(args) as bars:

        def on_row(name: str) -> progress.Counter:
            return progress.counter(bars, progress.Step(name, progress.Unit.QUERIES))

        corpus = Cascades.in_memory(preset).corpus(GallerySource(GalleryKind.WORLD), bars)
        swept = sweep_k1(first, last, corpus, args.sweep_k1, k_last, limit=args.limit, progress=on_row)
    lines = [_text_row(row) for row in (*swept.rows, swept.reference)]
    lines.append(f"smallest k_1 within 1 point of {last.id} alone (R@1, R@5, R@10): {swept.smallest_k1}")
    payload = {
        "rows": [_json_row(r) for r in swept.rows],
        "reference": _json_row(swept.reference),
        "smallest_k1_within_1_point": swept.smallest_k1,
    }
    common.emit(args, payload, "\n".join(lines))
    inputs = {**_inputs(args), "first": first.id, "last": last.id, "k_last": k_last}
    common.write_report(args.report, report.build_report("The k_1 sweep", inputs, report.sweep_sections(swept)))
    return 0
