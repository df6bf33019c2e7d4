"""Table 1, reproduced: every row of a family on a real gallery, beside the paper's printed figures.

    cascade reproduce --dataset flickr30k|coco --family vit|convnext|blip [--json] [--limit N]

Rows and their order are Table 1's (``analysis.table1.FAMILIES``): the family's largest
model, the other single models, then the cascades. Recall columns are printed as the paper
prints them: absolute for the largest model, deltas to it for every other row. The cost
columns are Table 1's (lifetime reduction at alpha = 0.1 and the early-latency reduction of
3-level cascades, from THOP-style MAC counts, ``analysis.table1``). The paper's figures are
data (``analysis/data/table1_paper.csv``); ``diff`` is ours minus the paper's, per cell.

JSON schema (``--json``)::

    {"dataset", "family", "n_images", "n_queries",
     "rows": [{"cascade": [labels], "levels": [encoder ids], "ks",
               "r1", "r5", "r10", "lifetime_reduction", "early_latency_reduction",
               "paper": {"r1", "r5", "r10", "lifetime", "early_latency"} | null,
               "diff": {"r1", "r5", "r10", "lifetime", "early_latency"} | null}]}
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from analysis import presets, table1
from analysis.cascades import assemble
from analysis.evaluate import RECALL_KS, CaptionEmbeddings, EvalResult, evaluate
from cascade import datasets
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade.errors import ConfigError

PAPER_FIGURES = Path(__file__).resolve().parent / "data" / "table1_paper.csv"
RECALL_COLUMNS = ("r1", "r5", "r10")


@dataclass(frozen=True)
class PaperRow:
    """One printed row of Table 1 (recall: absolute for the reference row, else deltas)."""

    r1: float
    r5: float
    r10: float
    lifetime: float
    early_latency: float | None


def paper_figures(path: Path = PAPER_FIGURES) -> dict[tuple[str, str, tuple[str, ...]], PaperRow]:
    """``(dataset, family, cascade labels) -> PaperRow`` from the figures file."""
    with open(path, newline="") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    figures = {}
    for row in csv.DictReader(lines):
        early = row["early_latency"].strip()
        figures[(row["dataset"], row["family"], tuple(row["cascade"].split()))] = PaperRow(
            float(row["r1"]),
            float(row["r5"]),
            float(row["r10"]),
            float(row["lifetime"]),
            float(early) if early else None,
        )
    return figures


@dataclass(frozen=True)
class ReproducedRow:
    cascade: tuple[str, ...]
    levels: tuple[str, ...]
    ks: tuple[int, ...]
    r1: float
    r5: float
    r10: float
    lifetime_reduction: float
    early_latency_reduction: float | None
    paper: PaperRow | None
    diff: dict[str, float | None] | None


@dataclass(frozen=True)
class Reproduction:
    dataset: str
    family: str
    n_images: int
    n_queries: int
    rows: tuple[ReproducedRow, ...]

    def to_json_dict(self) -> dict:
        rows = []
        for row in self.rows:
            item = asdict(row)
            item.update(cascade=list(row.cascade), levels=list(row.levels), ks=list(row.ks))
            rows.append(item)
        return {
            "dataset": self.dataset,
            "family": self.family,
            "n_images": self.n_images,
            "n_queries": self.n_queries,
            "rows": rows,
        }


def table_rows(family: table1.Family) -> list[tuple[str, ...]]:
    """Table 1's rows of ``family`` as model names: the largest, the other singles, the cascades."""
    names = [e.name for e in family.encoders]
    return [(names[-1],), *((name,) for name in names[:-1]), *family.cascades]


def reproduce(
    dataset: str,
    family_key: str,
    cache,
    limit: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    corpus: Corpus | None = None,
) -> Reproduction:
    """Evaluate every Table 1 row of ``family_key`` on ``dataset`` and set it beside the paper's figures.

    Args:
        cache: a feature cache (the store), shared by all rows: each model embeds each image at most once.
        limit: only the first ``limit`` captions.
        progress: ``(row label, done, total)`` per query.
        corpus: the gallery, if loaded already (else ``cascade.datasets.corpus(dataset)``).
    """
    datasets.get(dataset)
    family = table1.family_of(family_key)
    if corpus is None:
        corpus = datasets.corpus(dataset)
    labels = {e.name: e.label for e in family.encoders}
    costs = table1.build_table1("paper", alpha=0.1, k1=presets.PAPER_K1, k2=presets.PAPER_K2, families=[family])
    lifetime = {(s.name,): s.lifetime_reduction for s in costs.singles}
    lifetime.update({c.levels: c.lifetime_reduction for c in costs.cascades})
    early = {c.levels: c.early_latency_reduction for c in costs.cascades}
    results: list[EvalResult] = []
    captions = CaptionEmbeddings()  # a text tower in several rows encodes the captions once
    for names in table_rows(family):
        ks = clamped_ks(presets.paper_ks(len(names)), len(corpus))
        searcher = assemble([create_encoder(presets.encoder_name(n)) for n in names], corpus, cache)
        searcher.build()
        label = " > ".join(labels[n] for n in names)
        callback = None if progress is None else (lambda done, total, label=label: progress(label, done, total))
        results.append(evaluate(searcher, ks, progress=callback, limit=limit, captions=captions))
    figures = paper_figures()
    reference = results[0]
    rows = []
    for index, (names, result) in enumerate(zip(table_rows(family), results)):
        cascade = tuple(labels[n] for n in names)
        recall = {f"r{k}": result.recall[k] - (reference.recall[k] if index else 0.0) for k in RECALL_KS}
        paper = figures.get((dataset, family_key, cascade))
        ours = {**recall, "lifetime": lifetime[names], "early_latency": early.get(names)}
        rows.append(
            ReproducedRow(
                cascade,
                result.levels,
                result.ks,
                **recall,
                lifetime_reduction=lifetime[names],
                early_latency_reduction=early.get(names),
                paper=paper,
                diff=None if paper is None else _diff(ours, paper),
            )
        )
    return Reproduction(dataset, family_key, len(corpus), reference.n_queries, tuple(rows))


def clamped_ks(ks: Sequence[int], n_images: int) -> tuple[int, ...]:
    """``ks`` with each k at most the gallery's size (a small gallery, e.g. ``--limit`` runs on a mirror)."""
    if n_images < 10:
        raise ConfigError(f"Table 1's R@10 needs a gallery of at least 10 images, this one has {n_images}")
    return tuple(min(k, n_images) for k in ks)


def _diff(ours: dict, paper: PaperRow) -> dict[str, float | None]:
    theirs = asdict(paper)
    return {key: None if ours[key] is None or theirs[key] is None else ours[key] - theirs[key] for key in theirs}


def format_reproduction(rep: Reproduction) -> str:
    """Aligned text: ours, the paper's, and the difference per cell."""
    title = table1.FAMILY_KEYS[rep.family]
    lines = [
        f"Table 1, {title} on {rep.dataset} ({rep.n_images} images, {rep.n_queries} queries); "
        "recall: absolute for the first row, deltas to it below; each cell: ours / paper (diff)",
        "",
        f"{'Cascade':<18}{'R@1':>22}{'R@5':>22}{'R@10':>22}{'Lifetime':>22}{'Early latency':>22}",
    ]
    for row in rep.rows:
        cells = [_cell(getattr(row, c), _get(row.paper, c), signed=bool(rep.rows.index(row))) for c in RECALL_COLUMNS]
        cells.append(_cell(row.lifetime_reduction, _get(row.paper, "lifetime"), suffix="x"))
        cells.append(_cell(row.early_latency_reduction, _get(row.paper, "early_latency"), suffix="x"))
        lines.append(f"{'[' + ', '.join(row.cascade) + ']':<18}" + "".join(f"{cell:>22}" for cell in cells))
    if any(row.paper is None for row in rep.rows):
        lines += ["", "-: the paper prints no such row"]
    return "\n".join(lines)


def _get(paper: PaperRow | None, key: str) -> float | None:
    return None if paper is None else getattr(paper, key)


def _cell(ours: float | None, paper: float | None, signed: bool = False, suffix: str = "") -> str:
    if ours is None:
        return ""
    text = f"{ours:+.1f}" if signed else f"{ours:.1f}"
    if paper is None:
        return f"{text}{suffix} / -"
    return f"{text}{suffix} / {paper:g}{suffix} ({ours - paper:+.1f})"
