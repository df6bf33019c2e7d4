"""Benchmarks: ``python -m bench`` runs them all; ``python -m bench.NAME [--quick]`` runs one and prints its table."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence


def section_main(name: str, doc: str, run: Callable[[bool], object], markdown: Callable[[object], str],
                 argv: Sequence[str] | None) -> int:  # fmt: skip
    """The command line of one benchmark module: parse ``--quick``, run it, print its markdown table."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(markdown(run(args.quick)))
    return 0
