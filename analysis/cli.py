"""The command line: ``python -m cascade index|search|eval|log``.

Every subcommand works on the offline ``shapes`` preset unless told otherwise
(``--images``, ``--levels``, ``--ks``), keeps its embeddings and query log in
one DuckDB file (``--db``), and prints ``--json`` in the documented, stable
shapes (README, "Command line"). Errors are one line on stderr and exit code 1
(2 for usage errors); set ``CASCADE_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from analysis import presets, progress
from analysis.evaluate import evaluate
from analysis.store import EvalRecord, Store
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade.errors import CascadeError, ConfigError
from cascade.paths import default_db_path
from cascade.search import CascadeSearcher
from cascade.types import CascadeConfig


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return guarded(lambda: args.run(args))


def guarded(body: Callable[[], int]) -> int:
    """Run a command's body: errors become one line on stderr and an exit code, never a traceback.

    CascadeError and anything unexpected (a full disk, say) exit 1, Ctrl-C exits 130;
    ``CASCADE_DEBUG=1`` re-raises the unexpected ones.
    """
    try:
        return body()
    except CascadeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the last line of defence: a message, not a traceback
        if os.environ.get("CASCADE_DEBUG"):
            raise
        print(f"error: unexpected {type(err).__name__}: {err} (CASCADE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


# -- subcommands -------------------------------------------------------------------------------


def _cmd_index(args: argparse.Namespace) -> int:
    with Store(args.db) as store:
        corpus = _corpus(args, store)
        levels = _levels(args)[:1]
        searcher = CascadeSearcher(levels, corpus, cache=store)
        with _bar(args, "embedding", len(corpus)) as bar:
            report = searcher.build(progress=progress.callback(bar))
    _print(args, {"images": report.images, "embedded": report.embedded, "reused": report.reused,
                  "skipped": len(corpus.skipped)},  # fmt: skip
           f"{report.images} images: {report.embedded} embedded, {report.reused} reused from the cache, "
           f"{len(corpus.skipped)} skipped ({levels[0].id})")  # fmt: skip
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise ConfigError("the query is empty")
    config = _config(args)  # cheap checks before scanning a folder or loading a model
    with Store(args.db) as store:
        corpus = _corpus(args, store)
        config.check_corpus_size(len(corpus))
        levels, ks = _levels(args), config.ks
        searcher = CascadeSearcher(levels, corpus, cache=store, log=store)
        with _bar(args, "embedding", len(corpus)) as bar:
            searcher.build(progress=progress.callback(bar))
        result = searcher.search(args.query, ks)
    payload = {
        "query": result.query,
        "levels": [
            {"encoder": t.encoder, "k": t.k, "candidates": t.candidates, "hits": t.hits, "misses": t.misses,
             "image_macs": t.image_macs, "text_macs": t.text_macs, "latency_ms": round(t.latency_ms, 3),
             "results": [{"path": _path(corpus, i), "score": s} for i, s in zip(t.ids, t.scores)]}
            for t in result.levels
        ],
    }  # fmt: skip
    lines = []
    for number, level in enumerate(payload["levels"], start=1):
        lines.append(f"level {number}: {level['encoder']}  k={level['k']}  candidates={level['candidates']}  "
                     f"hits={level['hits']} misses={level['misses']}  image GMACs={level['image_macs'] / 1e9:.3f}  "
                     f"text GMACs={level['text_macs'] / 1e9:.3f}  {level['latency_ms']:.1f} ms")  # fmt: skip
        if number == len(payload["levels"]):
            lines += [f"  {rank:3d}. {r['score']:.4f}  {r['path']}" for rank, r in enumerate(level["results"], 1)]
    _print(args, payload, "\n".join(lines))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    config = _config(args)
    corpus, dataset = _dataset(args)
    config.check_corpus_size(len(corpus))
    levels, ks = _levels(args), config.ks
    with Store(args.db) as store:
        searcher = CascadeSearcher(levels, corpus, cache=store)
        with _bar(args, "embedding", len(corpus)) as bar:
            searcher.build(progress=progress.callback(bar))
        with _bar(args, "queries", None) as bar:
            result = evaluate(searcher, ks, progress=progress.callback(bar), limit=args.limit)
        store.save_evaluation(EvalRecord(
            config_key=searcher.config(ks).key, dataset=dataset, n_images=result.n_images,
            n_queries=result.n_queries, r1=result.r1, r5=result.r5, r10=result.r10,
            image_macs=result.image_macs, alpha=result.alpha,
        ))  # fmt: skip
    payload = {key: result.as_json()[key] for key in ("levels", "ks", "r1", "r5", "r10", "image_macs", "alpha")}
    _print(args, payload,
           f"{' > '.join(result.levels)}  ks={list(result.ks)}  on {dataset} ({result.n_images} images, "
           f"{result.n_queries} queries)\nR@1 {result.r1:.1f}  R@5 {result.r5:.1f}  R@10 {result.r10:.1f}  "
           f"image GMACs {result.image_macs / 1e9:.2f}  alpha {result.alpha:.3f}")  # fmt: skip
    return 0


def _cmd_log(args: argparse.Namespace) -> int:
    if not Path(args.db).expanduser().is_file():
        raise ConfigError(f"no database at {args.db} yet: run a search first")
    with Store(args.db, read_only=True) as store:
        recent = store.recent_queries(args.limit)
        configs = store.frame(
            "SELECT config_key, corpus_id, count(*) - 1 AS queries, "
            "max(cumulative_image_macs) AS cumulative_image_macs, "
            "max(CASE WHEN query_index = 0 THEN image_macs END) AS build_image_macs "
            "FROM cumulative_cost GROUP BY config_key, corpus_id ORDER BY config_key"
        )
    payload = {
        "queries": [
            {"query_id": int(r.query_id), "ts": r.ts.isoformat(), "config": r.config_key, "query": r.query,
             "image_macs": int(r.image_macs), "text_macs": int(r.text_macs), "latency_ms": round(r.latency_ms, 3)}
            for r in recent.itertuples()
        ],
        "configs": [
            {"config": r.config_key, "corpus_id": r.corpus_id, "queries": int(r.queries),
             "build_image_macs": int(r.build_image_macs), "cumulative_image_macs": int(r.cumulative_image_macs)}
            for r in configs.itertuples()
        ],
    }  # fmt: skip
    lines = [f"{q['query_id']:6d}  {q['ts'][:19]}  {q['image_macs'] / 1e9:9.3f} GMACs  {q['query'][:60]!r}"
             for q in payload["queries"]]  # fmt: skip
    lines += ["", "cumulative image cost per configuration (build included):"]
    lines += [f"  {c['config']}  {c['queries']} queries  {c['cumulative_image_macs'] / 1e9:.2f} GMACs"
              for c in payload["configs"]]  # fmt: skip
    _print(args, payload, "\n".join(lines))
    return 0


# -- argument handling -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cascade", description="Cascaded text-to-image search.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(run=run)
        p.add_argument("--db", default=str(default_db_path()), help="DuckDB file (default: %(default)s)")
        p.add_argument("--json", action="store_true", help="machine-readable output (see README)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        return p

    def cascade_args(p: argparse.ArgumentParser, with_ks: bool = True) -> None:
        p.add_argument("--preset", default="shapes", choices=presets.names(), help="defaults (default: %(default)s)")
        p.add_argument("--levels", type=_comma_list, help="encoders, cheapest first, e.g. shapes:small,shapes:large")
        if with_ks:
            p.add_argument("--ks", type=_comma_ints, help="one k per level, non-increasing, e.g. 100,10")

    p = command("index", _cmd_index, "embed a folder of images with level 1 (resumable)")
    p.add_argument("--images", help="image folder, searched recursively (default: the preset's gallery)")
    cascade_args(p, with_ks=False)

    p = command("search", _cmd_search, "search the images with a cascade")
    p.add_argument("query", help="the text query")
    p.add_argument("--images", help="image folder (default: the preset's gallery)")
    cascade_args(p)

    p = command("eval", _cmd_eval, "Recall@1/5/10 and image cost of a cascade on a captioned dataset")
    p.add_argument("--dataset", help="karpathy:PATH.json (Flickr30k/COCO Karpathy split) (default: the preset's)")
    p.add_argument("--images", help="image root of the dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="only the first N captions")
    cascade_args(p)

    p = command("log", _cmd_log, "recent queries and cumulative cost")
    p.add_argument("--limit", type=int, default=20, help="how many recent queries")
    return parser


def _comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _comma_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in _comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 100,10, got {text!r}") from None


def _level_names(args: argparse.Namespace) -> list[str]:
    return args.levels or list(presets.get(args.preset).levels)


def _levels(args: argparse.Namespace) -> list:
    return [create_encoder(name) for name in _level_names(args)]


def _config(args: argparse.Namespace) -> CascadeConfig:
    return CascadeConfig(levels=tuple(_level_names(args)), ks=_ks(args))


def _ks(args: argparse.Namespace) -> tuple[int, ...]:
    if args.ks:
        return args.ks
    if args.levels:
        raise ConfigError("--levels needs --ks (one k per level)")
    return presets.get(args.preset).ks


def _corpus(args: argparse.Namespace, store: Store) -> Corpus:
    if not args.images:
        return presets.gallery(args.preset)
    with _bar(args, "scanning", None) as bar:
        corpus = Corpus.from_folder(args.images, progress=progress.callback(bar), known=store)
    if corpus.skipped:
        print(f"warning: skipped {len(corpus.skipped)} unreadable or non-image file(s) in {args.images}",
              file=sys.stderr)  # fmt: skip
    return corpus


def _dataset(args: argparse.Namespace) -> tuple[Corpus, str]:
    if not args.dataset or args.dataset == args.preset:
        return presets.gallery(args.preset), f"{args.preset}:{args.split}"
    kind, _, path = args.dataset.partition(":")
    if kind != "karpathy" or not path:
        raise ConfigError(f"--dataset must be karpathy:PATH.json, got {args.dataset!r}")
    if not args.images:
        raise ConfigError("--dataset karpathy:... needs --images ROOT (the folder the dataset's paths start from)")
    return Corpus.from_karpathy(path, args.images, split=args.split), f"{Path(path).name}:{args.split}"


def _bar(args: argparse.Namespace, what: str, total: int | None) -> tqdm:
    return progress.bar(what, total, quiet=args.quiet)


def _path(corpus: Corpus, image_id: str) -> str:
    path = corpus.paths.get(image_id)
    return str(path) if path is not None else image_id


def _print(args: argparse.Namespace, payload: dict, text: str) -> None:
    print(json.dumps(payload) if args.json else text)
