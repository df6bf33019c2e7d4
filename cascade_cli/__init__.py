"""The command-line face: ``cascade COMMAND`` (or ``python -m cascade COMMAND``).

Every command is one module here with ``register(sub)``, listed in ``COMMANDS``
in the order ``--help`` shows them. The library below (``analysis``, ``cascade``)
prints nothing and exits nothing: this package turns its results into text or
``--json`` and its exceptions into one line on stderr and an exit code
(``cascade_cli.guard``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cascade_cli import (
    common,
    compare,
    convert_blip,
    evaluate,
    import_embeddings,
    index,
    log,
    replay,
    reproduce,
    search,
    table1,
)
from cascade_cli.guard import guarded

COMMANDS = (index, import_embeddings, search, evaluate, log, compare, replay, table1, reproduce, convert_blip)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit code."""

    def run() -> int:
        args = parser().parse_args(argv)
        return args.run(args)

    return guarded(run)


def parser() -> common.Parser:
    """The whole command line: one sub-parser per module in ``COMMANDS``."""
    top = common.Parser(prog="cascade", description="Cascaded text-to-image search, measured.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=common.Parser)
    for module in COMMANDS:
        module.register(sub)
    return top
