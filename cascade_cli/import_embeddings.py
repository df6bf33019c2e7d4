"""``cascade import-embeddings SRC --encoder ENC``: bring an existing CLIP index in as level 1 of ENC.

Every row is checked before anything is written (a fault is one line, exit 1, the database as it was);
the work is ``analysis.imported`` through ``Cascades.import_embeddings``.
"""

from __future__ import annotations

import argparse
import sys

from analysis.imported import ImportRequest, ImportResult, prepare
from analysis.store import Store
from cascade_cli import common
from cascade_cli.guard import UsageError


def register(sub) -> None:
    p = common.command(sub, "import-embeddings", run, "import an existing CLIP index as level-1 embeddings")
    p.add_argument("src", help="a clip-retrieval folder (img_emb/, metadata/), a Parquet file or folder, or a .npy")
    p.add_argument(
        "--encoder", required=True, help="the model that made the rows, e.g. openclip:ViT-B-32@laion2b_s34b_b79k"
    )
    p.add_argument("--images", metavar="ROOT", help="the folder the stored paths are found under (default: as written)")
    p.add_argument("--strip-prefix", default="", metavar="P", help="removed from each stored path before --images")
    p.add_argument("--id-column", help="Parquet: the column of ids or paths")
    p.add_argument("--embedding-column", help="Parquet: the column of embeddings (a list of floats)")
    p.add_argument("--caption-column", help="Parquet: an optional column of captions")
    p.add_argument("--paths", metavar="FILE", help=".npy: its paths file, one path per row")


def run(args: argparse.Namespace) -> int:
    if args.strip_prefix and not args.images:
        raise UsageError("import-embeddings: --strip-prefix needs --images ROOT")
    request = ImportRequest(
        src=args.src,
        encoder=args.encoder,
        images=args.images,
        strip_prefix=args.strip_prefix,
        id_column=args.id_column,
        embedding_column=args.embedding_column,
        caption_column=args.caption_column,
        paths=args.paths,
    )
    with common.bars(args) as bars:
        prepared = prepare(request, progress=bars)  # every row checked before the database is opened
        with Store(args.db) as store:
            result = common.cascades(args, store).import_embeddings(prepared, bars)
    if result.earlier is not None:
        print(
            f"note: the earlier index of this model was imported for {result.earlier}; its rows stay under that id "
            f"and are not served to {result.encoder}",
            file=sys.stderr,
        )
    common.emit(args, _payload(result), _text(result))
    return 0


def _payload(result: ImportResult) -> dict:
    names = ("images", "imported", "normalised", "missing", "dim", "dtype", "encoder")
    return {name: getattr(result, name) for name in names}


def _text(result: ImportResult) -> str:
    return (
        f"{result.images} rows read: {result.imported} images imported as level 1 of {result.encoder} "
        f"({result.dim} dimensions, {result.dtype}), {result.normalised} renormalised, "
        f"{result.missing} without a reachable file (kept under path ids)"
    )
