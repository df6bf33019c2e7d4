"""``cascade compare``: every configuration a preset compares, evaluated on its test gallery.

This is the command behind the README's recall table (it was ``python -m analysis.evaluate``).
Rows stream as they finish; ``--json`` prints one object per line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from analysis import presets, progress, report
from analysis.evaluate import JSON_KEYS, EvalResult, compare
from analysis.sweep import sweep_k1
from cascade import units
from cascade.corpus import ProgressFn
from cascade.encoders import create_encoder
from cascade_cli import common


def register(sub) -> None:
    p = common.command(sub, "compare", run, "Recall@1/5/10 and cost of every configuration of a preset", db=False)
    common.preset_arg(p)
    p.add_argument("--limit", type=common.positive_int, help="evaluate only the first N captions")
    p.add_argument("--sweep-k1", type=common.comma_ints, metavar="K,K,...",
                   help="instead: sweep k_1 of the preset's [first, last] cascade (e.g. 5,10,15,20,50,100); "
                        "R@1/5/10 and lifetime image cost per k_1, and the smallest k_1 within 1 point of the last "
                        "level alone")  # fmt: skip
    common.report_arg(p)


def run(args: argparse.Namespace) -> int:
    preset = presets.get(args.preset)
    if args.sweep_k1:
        return _sweep(args, preset)
    with common.bar(args, "evaluating", None, unit="q") as bar:

        def on_comparison(index: int, levels: Sequence[str]) -> ProgressFn:  # one bar, restarted per row
            bar.set_description(f"{index + 1}/{len(preset.comparisons)} {' > '.join(levels)}", refresh=False)
            bar.reset()
            return progress.callback(bar)

        rows = []
        for row in compare(preset, limit=args.limit, progress=on_comparison):
            common.emit(args, _json_row(row), _text_row(row))
            rows.append(row)
    if args.report:
        common.write_report(args.report, report.build_report(f"Compare: the {preset.name} preset's configurations",
                                                         _inputs(args), report.evaluation_sections(rows)))  # fmt: skip
    return 0


def _inputs(args: argparse.Namespace) -> dict:
    return {"command": "cascade compare", "preset": args.preset, "captions": args.limit or "all",
            "k_1 sweep": args.sweep_k1 or ""}  # fmt: skip


def _json_row(row: EvalResult) -> dict:
    values = row.as_json()
    return {key: round(values[key], 4) if isinstance(values[key], float) else values[key] for key in JSON_KEYS}


def _text_row(row: EvalResult) -> str:
    return (f"{' > '.join(row.levels):60s} ks={list(row.ks)!s:14s} R@1 {row.r1:5.2f}  R@5 {row.r5:5.2f}  "
            f"R@10 {row.r10:5.2f}  image GMACs {units.gmacs(row.image_macs):10.2f}  alpha {row.alpha:.3f}")  # fmt: skip


def _sweep(args: argparse.Namespace, preset) -> int:
    first, last = create_encoder(preset.levels[0]), create_encoder(preset.levels[-1])
    k_last = max(10, preset.ks[-1])
    with common.bar(args, "sweeping", None, unit="q") as bar:

        def on_row(name: str) -> ProgressFn:
            bar.set_description(name, refresh=False)
            bar.reset()
            return progress.callback(bar)

        swept = sweep_k1(first, last, presets.gallery(args.preset), args.sweep_k1, k_last, limit=args.limit,
                         progress=on_row)  # fmt: skip
    lines = [_text_row(row) for row in (*swept.rows, swept.reference)]
    lines.append(f"smallest k_1 within 1 point of {last.id} alone (R@1, R@5, R@10): {swept.smallest_k1}")
    payload = {"rows": [_json_row(r) for r in swept.rows], "reference": _json_row(swept.reference),
               "smallest_k1_within_1_point": swept.smallest_k1}  # fmt: skip
    common.emit(args, payload, "\n".join(lines))
    inputs = {**_inputs(args), "first": first.id, "last": last.id, "k_last": k_last}
    common.write_report(args.report, report.build_report("The k_1 sweep", inputs, report.sweep_sections(swept)))
    return 0
