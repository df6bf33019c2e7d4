"""``cascade log``: the most recent queries, and each configuration's cumulative image cost."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.store import Store
from cascade import units
from cascade.errors import ConfigError
from cascade_cli import common


def register(sub) -> None:
    p = common.command(sub, "log", run, "recent queries and cumulative cost")
    p.add_argument("--limit", type=common.positive_int, default=20, help="how many recent queries")


def run(args: argparse.Namespace) -> int:
    if not Path(args.db).expanduser().is_file():
        raise ConfigError(f"no database at {args.db} yet: run a search first")
    with Store(args.db, read_only=True) as store:
        recent, configs = store.recent_queries(args.limit), store.config_totals()
    payload = {
        "queries": [
            {
                "query_id": int(r.query_id),
                "ts": r.ts.isoformat(),
                "config": r.config_key,
                "query": r.query,
                "image_macs": int(r.image_macs),
                "text_macs": int(r.text_macs),
                "latency_ms": round(r.latency_ms, 3),
            }
            for r in recent.itertuples()
        ],
        "configs": [
            {
                "config": r.config_key,
                "corpus_id": r.corpus_id,
                "queries": int(r.queries),
                "build_image_macs": int(r.build_image_macs),
                "cumulative_image_macs": int(r.cumulative_image_macs),
            }
            for r in configs.itertuples()
        ],
    }
    lines = [
        f"{q['query_id']:6d}  {q['ts'][:19]}  {units.gmacs(q['image_macs']):9.3f} GMACs  {q['query'][:60]!r}"
        for q in payload["queries"]
    ]
    lines += ["", "cumulative image cost per configuration (build included):"]
    lines += [
        f"  {c['config']}  {c['queries']} queries  {units.gmacs(c['cumulative_image_macs']):.2f} GMACs"
        for c in payload["configs"]
    ]
    common.emit(args, payload, "\n".join(lines))
    return 0
