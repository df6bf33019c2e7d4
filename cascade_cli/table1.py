"""``cascade table1``: the cost columns of the paper's Table 1, from MAC counts (no weights needed)."""

from __future__ import annotations

import argparse
import json

from analysis.table1 import build_table1, format_table
from cascade.errors import ConfigError
from cascade_cli import common
from cascade_cli.guard import UsageError


def register(sub) -> None:
    p = common.command(sub, "table1", run, "reproduce the cost columns of the paper's Table 1", db=False)
    p.add_argument("--macs", choices=("paper", "full"), default="paper", help="MAC counting mode")
    p.add_argument("--alpha", type=float, default=0.1, help="share of images that ever reach level 2")
    p.add_argument("--k1", type=int, default=50, help="candidates level 1 hands on")
    p.add_argument("--k2", type=int, default=14, help="candidates level 2 hands on (3-level cascades)")


def run(args: argparse.Namespace) -> int:
    try:
        table = build_table1(args.macs, args.alpha, args.k1, args.k2)
    except ConfigError as err:  # the arguments' values are wrong: a usage error, as argparse's own
        raise UsageError(f"cascade table1: {err}") from None
    print(json.dumps(table.to_json_dict(), indent=2) if args.json else format_table(table, args.k1, args.k2))
    return 0
