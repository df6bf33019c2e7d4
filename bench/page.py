"""The benchmarks page: written whole from measured sections, or with re-run sections merged into it.

A page is a header, one summary table (benchmark | result | target | section) and one
``## Title`` block per section, each ending with the line that says when, in which mode and
under what load it was measured. The summary's last column names each row's section, so a
merge (``python -m bench --only KEY --merge``) replaces the re-run sections' blocks and rows
and keeps every other section's exactly as it was, measured line included.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cascade.errors import CascadeError

SUMMARY_HEADER = "| benchmark | result | target | section |"
_SEPARATOR = "|---|---|---|---|"
_ROW_SECTION = re.compile(r"\|\s*\[([^\]]+)\]\(#[^)]*\)\s*\|\s*$")  # the last cell: [Title](#anchor)


class PageError(CascadeError):
    """An existing page cannot be merged into (it has no per-section summary rows)."""


@dataclass(frozen=True)
class Block:
    """One section as it appears on the page.

    Attributes:
        body: the section's markdown (its table and notes); ignored when ``error`` is set.
        rows: its summary rows, (benchmark, result, target).
        measured: when and how it was measured (``measured_line``).
        error: why it failed, or "".
    """

    title: str
    intro: str
    body: str
    rows: tuple[tuple[str, str, str], ...]
    measured: str
    error: str = ""


def measured_line(started: datetime, quick: bool, load_average: float, threads: int, seconds: float) -> str:
    """``started`` in UTC; ``load_average``: the 1-minute load average when the section started."""
    mode = "--quick (smoke run, not for quoting)" if quick else "full"
    return (f"_Measured {started:%Y-%m-%d %H:%M} UTC, mode {mode}, load average {load_average:.1f} at its start, "
            f"{threads} torch thread(s); section time {seconds:.0f} s._")  # fmt: skip


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation other than ``-`` and ``_`` dropped, spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _row_lines(block: Block) -> list[str]:
    link = f"[{block.title}](#{anchor(block.title)})"
    if block.error:
        return [f"| {block.title} | FAILED: {block.error} | | {link} |"]
    return [f"| {name} | {result} | {target} | {link} |" for name, result, target in block.rows]


def _block_text(block: Block) -> str:
    body = f"FAILED: {block.error}" if block.error else block.body.rstrip("\n")
    return "\n".join([f"## {block.title}", "", " ".join(block.intro.split()), "", body, "", block.measured])


def _assemble(header: Sequence[str], rows: Sequence[str], blocks: Sequence[str]) -> str:
    lines = [*header, "", SUMMARY_HEADER, _SEPARATOR, *rows]
    for text in blocks:
        lines += ["", text.rstrip("\n")]
    return "\n".join(lines) + "\n"


def render(header: Sequence[str], blocks: Sequence[Block]) -> str:
    """The whole page: ``header`` lines, the summary table, then every block in order."""
    return _assemble(header, [line for block in blocks for line in _row_lines(block)], [_block_text(b) for b in blocks])


@dataclass(frozen=True)
class _Parsed:
    rows: dict[str, list[str]]  # section title -> its summary lines, verbatim
    blocks: dict[str, str]  # section title -> its "## Title" block, verbatim, in page order


def parse(text: str) -> _Parsed:
    """The summary rows (by the section their last cell names) and the section blocks of a page.

    Raises:
        PageError: the page has no summary table with a section column (written before there was one).
    """
    lines = text.splitlines()
    try:
        start = lines.index(SUMMARY_HEADER) + 2
    except ValueError:
        raise PageError("the page has no summary table with a section column (it predates --merge): "
                        "run `python -m bench` without --merge once") from None  # fmt: skip
    rows: dict[str, list[str]] = {}
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        found = _ROW_SECTION.search(lines[end])
        if found is None:
            raise PageError(f"summary row {end + 1} names no section: {lines[end][:80]}")
        rows.setdefault(found.group(1), []).append(lines[end])
        end += 1
    blocks: dict[str, str] = {}
    title = None
    for line in lines[end:]:
        if line.startswith("## "):
            title = line[3:].strip()
            blocks[title] = line
        elif title is not None:
            blocks[title] += "\n" + line
    return _Parsed(rows, {name: block.strip("\n") for name, block in blocks.items()})


def merge(old: str, header: Sequence[str], blocks: Sequence[Block], when: str) -> str:
    """``old`` with ``blocks`` in place of the sections of the same titles (new ones at the end).

    A re-run that failed keeps the section's previous figures, under a line saying that it
    failed ``when`` and why: nothing measured before is lost, and the page does not pass the
    old figures off as new.

    Raises:
        PageError: ``old`` cannot be parsed (see ``parse``).
    """
    parsed = parse(old)
    fresh = {block.title: block for block in blocks}
    titles = list(parsed.blocks) + [title for title in fresh if title not in parsed.blocks]
    titles += [title for title in parsed.rows if title not in titles]  # rows whose block was lost: kept
    rows, texts = [], []
    for title in titles:
        block = fresh.get(title)
        if block is not None and (not block.error or title not in parsed.blocks):
            rows += _row_lines(block)
            texts.append(_block_text(block))
            continue
        rows += parsed.rows.get(title, [])
        if title in parsed.blocks:
            text = parsed.blocks[title]
            if block is not None:  # failed now: the previous figures stay, flagged
                heading, _, rest = text.partition("\n")
                note = f"_Re-run {when} FAILED ({block.error}); the figures below are the previous run's._"
                text = f"{heading}\n\n{note}\n{rest}"
            texts.append(text)
    return _assemble(header, rows, texts)
