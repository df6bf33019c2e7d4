"""The page's words and tables: pure functions from the engine's results to Markdown, captions and frames.

Nothing here touches gradio, so each function is tested on hand-made inputs
(tests/test_ui_formatting.py) and read without a browser.
"""

from __future__ import annotations

import pandas as pd

from analysis import engine as eng
from analysis import plots, whatif
from analysis.engine import Choice, GalleryKind
from analysis.replay import ReplayResult
from cascade.corpus import Corpus
from cascade.types import LevelTrace
from cascade.world import LIFETIME_GALLERY_IMAGES

PAPER_ALPHA = 0.1
MAX_SHOWN = 100  # images shown per stage: a k_1 of 1,000 would flood the page (and Gradio's file cache)
MAX_TRACE_MOVES = 20  # moves listed per stage in the trace
_GALLERY_WHERE = {GalleryKind.WORLD: "the built-in world", GalleryKind.UPLOAD: "your uploaded images"}


def describe_choice(choice: Choice, gallery: str | None = None) -> str:
    """``a (k=20) > b (k=5) on the built-in world``: the cascade as the status line names it.

    ``gallery``: the gallery's name when the engine knows better (``Galleries.name``: a hub preset's own gallery).
    """
    stages = " > ".join(f"{name} (k={k})" for name, k in zip(choice.levels, choice.ks))
    kind = choice.gallery.kind
    where = choice.gallery.path if kind in (GalleryKind.FOLDER, GalleryKind.DATASET) else _GALLERY_WHERE.get(kind, kind)
    return f"{stages} on {gallery or where}"


def skipped_note(corpus: Corpus, shown: int = 3) -> str:
    """`` · N file(s) skipped ...`` naming the first few files of a folder or upload that are not readable images."""
    if not corpus.skipped:
        return ""
    names = ", ".join(path.name for path in corpus.skipped[:shown]) + (", ..." if len(corpus.skipped) > shown else "")
    return f" · {len(corpus.skipped)} file(s) skipped, not readable images: {names}"


def stage_items(trace: LevelTrace, corpus: Corpus, shown: int = MAX_SHOWN) -> list[tuple[str, str]]:
    """(image path, caption) of one stage's first ``shown`` kept images, best first; cache misses marked.

    An imported row whose file was not found (a ``path:`` id) has nothing to show: it keeps its rank, unseen.
    """
    items = []
    for rank, (image_id, score) in enumerate(zip(trace.ids[:shown], trace.scores), start=1):
        if image_id not in corpus.paths:
            continue
        mark = " · embedded now" if image_id in trace.missed_ids else ""
        items.append((str(corpus.paths[image_id]), f"#{rank} · {score:.4f}{mark}"))
    return items


def stage_label(trace: LevelTrace, number: int, shown: int = MAX_SHOWN) -> str:
    """``Stage 2: fake:large kept 5 of 20 · 20 embedded now``, saying so when the gallery shows fewer than kept."""
    cut = f", showing {shown}" if len(trace.ids) > shown else ""
    return (
        f"Stage {number}: {plots.short_encoder(trace.encoder)} kept {trace.k} of {trace.candidates}"
        f"{cut} · {trace.misses} embedded now"
    )


def _cell(macs: float) -> str:
    """MACs in a table cell: ``120.00 G``, ``0`` (no trailing space, so ``**0**`` stays bold in Markdown)."""
    return plots.format_si(macs).strip()


def cost_card(outcome: eng.SearchOutcome) -> str:
    """Markdown: per-stage MACs and wall time, and the uncascaded top encoder over the same lifetime."""
    result = outcome.result
    rows = [
        "| stage | encoder | scored | embedded now | image MACs | text MACs | wall time |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for n, t in enumerate(result.levels, start=1):
        counts = f"{t.candidates:,} | {t.misses:,} | {_cell(t.image_macs)} | {_cell(t.text_macs)}"
        rows.append(f"| {n} | {plots.short_encoder(t.encoder)} | {counts} | {t.latency_ms:.1f} ms |")
    totals = f"**{_cell(result.image_macs)}** | **{_cell(result.text_macs)}** | **{result.latency_ms:.1f} ms**"
    rows += [f"| **total** | | | | {totals} |", "", _uncascaded(outcome)]
    return "\n".join(rows)


def _uncascaded(outcome: eng.SearchOutcome) -> str:
    """The cost card's last line: the top encoder alone against what the cascade has spent over its log."""
    si, levels = plots.format_si, outcome.result.levels
    top = max(levels, key=lambda t: t.macs_per_image)
    n_images, q = len(outcome.corpus), max(outcome.queries_logged, 1)
    top_total, spent = n_images * top.macs_per_image, outcome.lifetime_image_macs
    return (
        f"**Uncascaded, {plots.short_encoder(top.encoder)} alone** embeds all {n_images:,} images once: "
        f"{si(top_total)}MACs at build, nothing per query. Over the {q:,} queries logged for this cascade that is "
        f"{si(top_total / q)}MACs per query; the cascade has spent {si(spent)}MACs "
        f"(its build plus every miss), {si(spent / q)}MACs per query."
    )


def cost_summary(view: eng.CostView) -> str:
    """Markdown over the Cost tab's charts: queries logged, MACs spent, alpha, what the searches paid, and
    break-even with each level alone."""
    name = plots.short_config(view.config_key)
    if len(view.cumulative) < 2:  # the build's row at most
        return f"**{name}**: no queries logged yet."
    si, spent = plots.format_si, float(view.cumulative["cumulative_image_macs"].iloc[-1])
    queries = len(view.cumulative) - 1  # row 0 is the build
    lines = [
        f"**{name}** on {view.corpus_size:,} images: {queries:,} quer{'y' if queries == 1 else 'ies'} logged, "
        f"{si(spent)}MACs over its own lifetime (build included). Measured alpha {view.alpha:.3f}, from this "
        f"cascade's logged queries (the paper assumes {PAPER_ALPHA}).",
    ]
    if not view.paid.empty:
        paid = float(view.paid["cumulative_image_macs"].iloc[-1])
        lines.append(
            f"- Searches paid {si(paid)}MACs in the shared cache (build included): less than its own cost when "
            "evaluations or other cascades had embedded the images first."
        )
    for row in view.baselines.itertuples():
        crossing = plots.break_even_index(view.cumulative["cumulative_image_macs"], row.image_macs)
        verdict = _break_even_verdict(crossing, view.cumulative["query_index"], row.image_macs - spent)
        lines.append(f"- vs **{plots.short_encoder(row.encoder_id)} alone** ({si(row.image_macs)}MACs): {verdict}")
    return "\n".join(lines)


def _break_even_verdict(crossing: int | None, query_index: pd.Series, saved_macs: float) -> str:
    if crossing == 0:
        return "costs more from the start (it is the cheapest level)"
    if crossing:
        return f"break-even at query {query_index.iloc[crossing]}"
    return f"not reached: {plots.format_si(saved_macs)}MACs saved so far"


def replay_done(result: ReplayResult, alpha_ever: float, k_1: int, n_images: int) -> str:
    """The verdict under the Cost tab's charts once a replay finished; ``alpha_ever`` is the log's, not the replay's."""
    floor = alpha_floor_note(result, k_1, n_images)
    return (
        f"**Replay done:** {result.queries:,} {result.workload} queries in {result.wall_s:.1f} s. "
        f"Alpha measured in this replay (fresh system): **{result.alpha:.3f}**; "
        f"handed above level 1 by all of this cascade's logged queries: "
        f"**{alpha_ever:.3f}**; the paper assumes **{PAPER_ALPHA}**. Fresh-system cost "
        f"{plots.format_si(result.cascade_image_macs)}MACs vs {plots.format_si(result.baseline_image_macs)}MACs "
        f"for the last level alone ({result.reduction:.2f}x).{floor}"
    )


def alpha_floor_note(result: ReplayResult, k_1: int, n_images: int) -> str:
    """Why alpha came out far above the paper's, when it did: distinct queries x k_1 against the gallery."""
    if result.alpha <= 2 * PAPER_ALPHA or result.alpha == 0:
        return ""
    reach = result.distinct_queries * k_1
    return (
        f" Why so high: {result.distinct_queries:,} distinct queries x k_1 = {k_1} can hand up to {reach:,} "
        f"images to level 2, against {n_images:,} in this gallery. Alpha stays near {PAPER_ALPHA} only in a "
        f"gallery large against that: `cascade replay` replays on the preset's lifetime gallery "
        f"({LIFETIME_GALLERY_IMAGES:,} images)."
    )


def whatif_summary(model: whatif.WhatIf, n: int, alpha: float, macs_mode: str) -> str:
    """Markdown beside the What-if chart: per-image costs, the lifetime and Eq. 1 reductions, each break-even."""
    costs = ", ".join(f"{label} {gmacs:.2f}" for label, gmacs in model.image_gmacs.items())
    eq1 = "Eq. 1 needs 3 levels (it compares a deep cascade with [first, last])"
    if model.early_latency_reduction is not None:
        eq1 = f"Eq. 1 early-latency reduction against [first, last]: **{model.early_latency_reduction:.2f}x**"
    lines = [
        f"N = {n:,} images, alpha = {alpha:g}, MACs: {macs_mode} (GMACs per image: {costs}).",
        f"- Lifetime reduction against the last level alone: **{model.lifetime_reduction:.2f}x**",
        f"- First query (empty caches) embeds **{model.early_query_image_gmacs:,.0f} GMACs** of images; {eq1}",
    ]
    for name, q in model.break_even.items():
        lines.append(f"- Break-even with {name}: {_whatif_verdict(q)}")
    return "\n".join(lines)


def _whatif_verdict(q: int | None) -> str:
    if q == 0:
        return "costs more from the start"
    return "never (the cascade stays cheaper)" if q is None else f"{q:,} queries"


def evaluation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The evaluations as people read them: short names, recall in percent, lifetime MACs with SI units."""
    return pd.DataFrame(
        {
            "configuration": [plots.short_config(key, drop_backend=True) for key in frame["config_key"]],
            "images": frame["n_images"],
            "queries": frame["n_queries"],
            "R@1 %": frame["r1"].round(1),
            "R@5 %": frame["r5"].round(1),
            "R@10 %": frame["r10"].round(1),
            "lifetime image MACs": [f"{plots.format_si(m)}MACs" for m in frame["image_macs"]],
            "alpha": frame["alpha"].round(3),
        }
    )


# ---------------------------------------------------------------- real units (analysis.hardware)

_DURATIONS = ((365.25 * 86400, "years"), (86400, "days"), (3600, "h"), (60, "min"), (1, "s"), (1e-3, "ms"))


def format_seconds(seconds: float) -> str:
    """``1.5 h``, ``2.3 days``, ``12 ms``: the largest unit the duration fills at least once."""
    for size, name in _DURATIONS:
        if seconds >= size:
            return f"{seconds / size:,.3g} {name}"
    return f"{seconds * 1e6:.3g} µs"


def format_money(amount: float) -> str:
    """USD with as many decimals as a small amount needs: ``$1,234``, ``$0.42``, ``$0.00031``."""
    if amount >= 100:
        return f"${amount:,.0f}"
    return f"${amount:.2g}" if amount < 0.01 else f"${amount:,.2f}"


def format_estimate(estimate) -> str:
    """``1.5 h · $3.75 · 1.05 kWh`` of an ``analysis.hardware.Estimate``."""
    return f"{format_seconds(estimate.seconds)} · {format_money(estimate.money)} · {estimate.kwh:,.3g} kWh"


def real_units_summary(costs, break_even: dict[str, int | None] | None = None) -> str:
    """Markdown of an ``analysis.hardware.RealCosts``: build, first query, lifetime, each encoder alone, break-even.

    The label says how the figures were obtained (estimated from MACs at X% efficiency, or measured).
    """
    lines = [
        f"**In time, money and energy** ({costs.label}; image encoding only):",
        f"- Build (level 1 over the gallery): **{format_estimate(costs.build)}**",
        f"- First query's added latency (every cache empty): **{format_seconds(costs.first_query.seconds)}** "
        f"({format_money(costs.first_query.money)})",
        f"- Lifetime (build + every image ever handed on): **{format_estimate(costs.lifetime)}**",
    ]
    for name, alone in costs.baselines.items():
        lines.append(f"- {plots.short_encoder(name)} alone over the gallery: {format_estimate(alone)}")
    for name, q in (break_even or {}).items():
        verdict = "from the start" if q == 0 else "never" if q is None else f"after {q:,} queries"
        lines.append(f"- Break-even with {name}: {verdict}")
    return "\n".join(lines)


def trace_markdown(trace: dict) -> str:
    """The stage trace (``analysis.trace.stage_trace``) as text: the caption's own image first, then each stage's
    re-ranking (previous rank -> now)."""
    lines = []
    target = trace.get("target")
    if target is not None:
        lines.append(f"**The image this caption describes** ({target['file']}): {target['summary']}.")
    arrows = {"up": "↑", "down": "↓", "same": "=", "new": "new"}
    for stage in trace["stages"]:
        moved = ", ".join(
            f"#{m['rank']} (was #{m['previous_rank']} {arrows[m['move']]})" for m in stage["moves"][:MAX_TRACE_MOVES]
        )
        more = " …" if len(stage["moves"]) > MAX_TRACE_MOVES else ""
        lines.append(
            f"- **Stage {stage['stage']}**: {stage['previous_top_k_survived']} of the previous stage's top "
            f"{stage['k']} survived; {moved}{more}"
        )
    return "\n".join(lines)


def ks_cut_note(asked: tuple[int, ...], ran: tuple[int, ...], n_images: int) -> str:
    """The status line's addition when a small gallery cut the ks to its size ("" when nothing was cut)."""
    if not asked:
        return ""
    return (
        f" · the gallery has {n_images:,} images, so ks {', '.join(map(str, asked))} ran as {', '.join(map(str, ran))}"
    )
