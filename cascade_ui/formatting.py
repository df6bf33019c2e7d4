"""The page's words and tables: pure functions from the engine's results to Markdown, captions and frames.

Nothing here touches gradio, so each function is tested on hand-made inputs
(tests/test_ui_formatting.py) and read without a browser.
"""

from __future__ import annotations

import pandas as pd

from analysis import engine as eng
from analysis import plots, whatif
from analysis.engine import Choice
from analysis.replay import ReplayResult
from cascade.corpus import Corpus
from cascade.types import LevelTrace
from cascade.world import LIFETIME_GALLERY_IMAGES

PAPER_ALPHA = 0.1
MAX_SHOWN = 100  # images shown per stage: a k_1 of 1,000 would flood the page (and Gradio's file cache)
_GALLERY_WHERE = {"world": "the built-in world", "upload": "your uploaded images"}


def describe_choice(choice: Choice) -> str:
    """``a (k=20) > b (k=5) on the built-in world``: the cascade as the status line names it."""
    stages = " > ".join(f"{name} (k={k})" for name, k in zip(choice.levels, choice.ks))
    kind = choice.gallery.kind
    where = choice.gallery.path if kind in ("folder", "dataset") else _GALLERY_WHERE.get(kind, kind)
    return f"{stages} on {where}"


def skipped_note(corpus: Corpus, shown: int = 3) -> str:
    """`` · N file(s) skipped ...`` naming the first few files of a folder or upload that are not readable images."""
    if not corpus.skipped:
        return ""
    names = ", ".join(path.name for path in corpus.skipped[:shown]) + (", ..." if len(corpus.skipped) > shown else "")
    return f" · {len(corpus.skipped)} file(s) skipped, not readable images: {names}"


def stage_items(trace: LevelTrace, corpus: Corpus, shown: int = MAX_SHOWN) -> list[tuple[str, str]]:
    """(image path, caption) of one stage's first ``shown`` kept images, best first; cache misses marked."""
    items = []
    for rank, (image_id, score) in enumerate(zip(trace.ids[:shown], trace.scores), start=1):
        mark = " · embedded now" if image_id in trace.missed_ids else ""
        items.append((str(corpus.paths[image_id]), f"#{rank} · {score:.4f}{mark}"))
    return items


def stage_label(trace: LevelTrace, number: int, shown: int = MAX_SHOWN) -> str:
    """``Stage 2: fake:large kept 5 of 20 · 20 embedded now``, saying so when the gallery shows fewer than kept."""
    cut = f", showing {shown}" if len(trace.ids) > shown else ""
    return (f"Stage {number}: {plots.short_encoder(trace.encoder)} kept {trace.k} of {trace.candidates}"
            f"{cut} · {trace.misses} embedded now")  # fmt: skip


def cost_card(outcome: eng.SearchOutcome) -> str:
    """Markdown: per-stage MACs and wall time, and the uncascaded top encoder over the same lifetime."""
    si, result = plots.format_si, outcome.result
    rows = ["| stage | encoder | scored | embedded now | image MACs | text MACs | wall time |",
            "|---|---|--:|--:|--:|--:|--:|"]  # fmt: skip
    rows += [f"| {n} | {plots.short_encoder(t.encoder)} | {t.candidates:,} | {t.misses:,} | {si(t.image_macs)} "
             f"| {si(t.text_macs)} | {t.latency_ms:.1f} ms |"
             for n, t in enumerate(result.levels, start=1)]  # fmt: skip
    rows.append(f"| **total** | | | | **{si(result.image_macs)}** | **{si(result.text_macs)}** "
                f"| **{result.latency_ms:.1f} ms** |")  # fmt: skip
    top = max(result.levels, key=lambda t: t.macs_per_image)
    n_images, q = len(outcome.corpus), max(outcome.queries_logged, 1)
    top_total = n_images * top.macs_per_image
    rows += ["", f"**Uncascaded, {plots.short_encoder(top.encoder)} alone** embeds all {n_images:,} images once: "
             f"{si(top_total)}MACs at build, nothing per query. Over the {q:,} queries logged for this cascade that is "
             f"{si(top_total / q)}MACs per query; the cascade has spent {si(outcome.lifetime_image_macs)}MACs "
             f"(its build plus every miss), {si(outcome.lifetime_image_macs / q)}MACs per query."]  # fmt: skip
    return "\n".join(rows)


def cost_summary(view: eng.CostView, alpha: float) -> str:
    """Markdown over the Cost tab's charts: queries logged, MACs spent, alpha, break-even with each level alone."""
    if view.cumulative.empty:
        return f"**{plots.short_config(view.config_key)}**: no queries logged yet."
    si, spent = plots.format_si, float(view.cumulative["cumulative_image_macs"].iloc[-1])
    queries = len(view.cumulative) - 1  # row 0 is the build
    lines = [f"**{plots.short_config(view.config_key)}** on {view.corpus_size:,} images: "
             f"{queries:,} quer{'y' if queries == 1 else 'ies'} logged, "
             f"{si(spent)}MACs spent (build included). "
             f"Measured alpha {alpha:.3f}, from this cascade's logged queries "
             f"(the paper assumes {PAPER_ALPHA})."]  # fmt: skip
    for row in view.baselines.itertuples():
        crossing = plots.break_even_index(view.cumulative["cumulative_image_macs"], row.image_macs)
        verdict = ("costs more from the start (it is the cheapest level)" if crossing == 0
                   else f"break-even at query {view.cumulative['query_index'].iloc[crossing]}" if crossing
                   else f"not reached: {si(row.image_macs - spent)}MACs saved so far")  # fmt: skip
        lines.append(f"- vs **{plots.short_encoder(row.encoder_id)} alone** ({si(row.image_macs)}MACs): {verdict}")
    return "\n".join(lines)


def replay_done(result: ReplayResult, alpha_ever: float, k_1: int, n_images: int) -> str:
    """The verdict under the Cost tab's charts once a replay finished; ``alpha_ever`` is the log's, not the replay's."""
    floor = alpha_floor_note(result, k_1, n_images)
    return (f"**Replay done:** {result.queries:,} {result.workload} queries in {result.wall_s:.1f} s. "
            f"Alpha measured in this replay (fresh system): **{result.alpha:.3f}**; "
            f"handed above level 1 by all of this cascade's logged queries: "
            f"**{alpha_ever:.3f}**; the paper assumes **{PAPER_ALPHA}**. Fresh-system cost "
            f"{plots.format_si(result.cascade_image_macs)}MACs vs {plots.format_si(result.baseline_image_macs)}MACs "
            f"for the last level alone ({result.reduction:.2f}x).{floor}")  # fmt: skip


def alpha_floor_note(result: ReplayResult, k_1: int, n_images: int) -> str:
    """Why alpha came out far above the paper's, when it did: distinct queries x k_1 against the gallery."""
    if result.alpha <= 2 * PAPER_ALPHA or result.alpha == 0:
        return ""
    reach = result.distinct_queries * k_1
    return (f" Why so high: {result.distinct_queries:,} distinct queries x k_1 = {k_1} can hand up to {reach:,} "
            f"images to level 2, against {n_images:,} in this gallery. Alpha stays near {PAPER_ALPHA} only in a "
            f"gallery large against that: `cascade replay` replays on the preset's lifetime gallery "
            f"({LIFETIME_GALLERY_IMAGES:,} images).")  # fmt: skip


def whatif_summary(model: whatif.WhatIf, n: int, alpha: float, macs_mode: str) -> str:
    """Markdown beside the What-if chart: per-image costs, the lifetime and Eq. 1 reductions, each break-even."""
    costs = ", ".join(f"{label} {gmacs:.2f}" for label, gmacs in model.image_gmacs.items())
    eq1 = ("Eq. 1 early-latency reduction against [first, last]: "
           f"**{model.early_latency_reduction:.2f}x**" if model.early_latency_reduction is not None
           else "Eq. 1 needs 3 levels (it compares a deep cascade with [first, last])")  # fmt: skip
    lines = [f"N = {n:,} images, alpha = {alpha:g}, MACs: {macs_mode} (GMACs per image: {costs}).",
             f"- Lifetime reduction against the last level alone: **{model.lifetime_reduction:.2f}x**",
             f"- First query (empty caches) embeds **{model.early_query_image_gmacs:,.0f} GMACs** of images; "
             f"{eq1}"]  # fmt: skip
    for name, q in model.break_even.items():
        verdict = ("costs more from the start" if q == 0 else "never (the cascade stays cheaper)" if q is None
                   else f"{q:,} queries")  # fmt: skip
        lines.append(f"- Break-even with {name}: {verdict}")
    return "\n".join(lines)


def evaluation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The evaluations as people read them: short names, recall in percent, lifetime MACs with SI units."""
    return pd.DataFrame({
        "configuration": [plots.short_config(key, drop_backend=True) for key in frame["config_key"]],
        "images": frame["n_images"], "queries": frame["n_queries"],
        "R@1 %": frame["r1"].round(1), "R@5 %": frame["r5"].round(1), "R@10 %": frame["r10"].round(1),
        "lifetime image MACs": [f"{plots.format_si(m)}MACs" for m in frame["image_macs"]],
        "alpha": frame["alpha"].round(3),
    })  # fmt: skip


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
    lines = [f"**In time, money and energy** ({costs.label}; image encoding only):",
             f"- Build (level 1 over the gallery): **{format_estimate(costs.build)}**",
             f"- First query's added latency (every cache empty): **{format_seconds(costs.first_query.seconds)}** "
             f"({format_money(costs.first_query.money)})",
             f"- Lifetime (build + every image ever handed on): **{format_estimate(costs.lifetime)}**"]  # fmt: skip
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
        moved = ", ".join(f"#{m['rank']} (was #{m['previous_rank']} {arrows[m['move']]})"
                          for m in stage["moves"][:MAX_TRACE_MOVES])  # fmt: skip
        more = " …" if len(stage["moves"]) > MAX_TRACE_MOVES else ""
        lines.append(f"- **Stage {stage['stage']}**: {stage['previous_top_k_survived']} of the previous stage's top "
                     f"{stage['k']} survived; {moved}{more}")  # fmt: skip
    return "\n".join(lines)


MAX_TRACE_MOVES = 20


def ks_cut_note(asked: tuple[int, ...], ran: tuple[int, ...], n_images: int) -> str:
    """The status line's addition when a small gallery cut the ks to its size ("" when nothing was cut)."""
    if not asked:
        return ""
    return (f" · the gallery has {n_images:,} images, so ks {', '.join(map(str, asked))} "
            f"ran as {', '.join(map(str, ran))}")  # fmt: skip
