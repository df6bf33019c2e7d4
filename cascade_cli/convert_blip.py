"""``cascade convert-blip SRC.pth OUT_DIR``: BLIP's or LAVIS's own retrieval checkpoint -> a ``blip:OUT_DIR`` folder."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from cascade_cli import common


def register(sub) -> None:
    p = common.command(
        sub, "convert-blip", run, "convert a BLIP or LAVIS retrieval checkpoint (.pth) for blip:OUT_DIR", db=False
    )
    p.add_argument("source", type=Path, metavar="SRC.pth", help="e.g. model_base_retrieval_coco.pth")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="new (or empty) folder to write")
    p.add_argument(
        "--tokenizer",
        type=Path,
        metavar="DIR",
        help="bert-base-uncased folder (vocab.txt); default: the Hugging Face cache",
    )


def run(args: argparse.Namespace) -> int:
    from cascade.encoders.blip_convert import convert_checkpoint

    report = convert_checkpoint(args.source, args.out_dir, args.tokenizer)
    dropped = ", ".join(f"{group} ({count})" for group, count in report.dropped) or "nothing"
    lines = [
        f"wrote {report.out_dir}: BLIP-{report.variant} at {report.image_size} px, {report.tensors} tensors",
        f"dropped (training only): {dropped}",
        f"tokenizer: {report.tokenizer} + [DEC] + [ENC]",
        f"use it as blip:{report.out_dir} (ITC) and blip:{report.out_dir}+itm (ITM re-ranker)",
    ]
    if report.unrecognised:
        shown = ", ".join(report.unrecognised[:5]) + (" ..." if len(report.unrecognised) > 5 else "")
        lines.insert(2, f"not recognised, left out ({len(report.unrecognised)}): {shown}")
    common.emit(args, dataclasses.asdict(report), "\n".join(lines))
    return 0
