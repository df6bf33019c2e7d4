"""The reproduce table's layout is Table 1's: same rows, same order, same columns as the printed figures file."""

from __future__ import annotations

import csv

import pytest

from analysis import reproduce, table1
from analysis.reproduce import PAPER_FIGURES, PaperRow, paper_figures, table_rows


def printed_rows() -> dict[tuple[str, str], list[tuple[str, ...]]]:
    """The figures file's rows per (dataset, family), in file order, read without the module's parser."""
    with open(PAPER_FIGURES) as handle:
        lines = [line for line in handle if not line.startswith("#")]
    blocks: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for row in csv.reader(lines[1:]):
        blocks.setdefault((row[0], row[1]), []).append(tuple(row[2].split(" ")))
    return blocks


def test_the_figures_file_has_table1s_columns_and_blocks():
    with open(PAPER_FIGURES) as handle:
        header = next(line for line in handle if not line.startswith("#")).strip()
    assert header == "dataset,family,cascade,r1,r5,r10,lifetime,early_latency"
    assert sorted(printed_rows()) == sorted([("flickr30k", "vit"), ("flickr30k", "convnext"), ("coco", "vit"),
                                             ("coco", "convnext"), ("coco", "blip")])  # fmt: skip
    figures = paper_figures()
    assert figures[("coco", "convnext", ("XXL",))] == PaperRow(45.78, 70.74, 79.60, 1.0, None)
    assert figures[("flickr30k", "convnext", ("B", "L", "XXL"))] == PaperRow(0.4, -0.3, 0.3, 4.5, 1.97)


@pytest.mark.parametrize(("dataset", "family"), sorted(printed_rows()))
def test_reproduce_rows_follow_table1(dataset, family):
    labels = {e.name: e.label for e in table1.family_of(family).encoders}
    ours = [tuple(labels[name] for name in row) for row in table_rows(table1.family_of(family))]
    printed = printed_rows()[(dataset, family)]
    # Every printed row is one of ours, in the same order; ours adds only rows the paper left out of a block.
    assert [row for row in ours if row in printed] == printed
    assert ours[0] == printed[0] and len(ours[0]) == 1  # the reference: the family's largest model
    missing = [row for row in ours if row not in printed]
    assert missing == ([("L", "XXL")] if (dataset, family) == ("coco", "convnext") else [])


def test_cells_show_ours_the_papers_and_the_difference():
    assert reproduce._cell(-5.0, -6.5, signed=True) == "-5.0 / -6.5 (+1.5)"
    assert reproduce._cell(2.6, None, suffix="x") == "2.6x / -"
    assert reproduce.clamped_ks((50, 14, 10), 24) == (24, 14, 10)
