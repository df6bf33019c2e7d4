"""The page while the Space's preset prepares: what is happening, Search off until it is ready, a switch shown.

One ``analysis.front_door.Preparation`` runs in one thread; every page only reads its ``report()``,
on load and on a ``gr.Timer`` tick, so visitors arriving meanwhile all see the same progress and
none starts a second preparation. When it ends the tick turns the Search buttons on and stops. When
it failed, the engine already serves the fallback preset: the page's preset line gives the one line
saying why, and the cascade builder is set to the fallback's defaults (the page was built for the
preset asked for).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gradio as gr

from analysis.engine import Engine
from analysis.front_door import Phase, Preparation, Report
from analysis.presets import Preset
from cascade_ui.common import Session
from cascade_ui.controls import DEFAULT_GALLERY, CascadeControls
from cascade_ui.formatting import describe_choice
from cascade_ui.search_tab import SearchTab

POLL_S = 1.0  # how often a page asks how the preparation is going (a lock and a few strings: cheap)
PRIVATE = {"api_visibility": "private", "show_progress": "hidden", "queue": False}


def preset_line(preset: Preset, notice: str = "") -> str:
    """The line under the title naming the preset served (and, after a switch, why)."""
    return f"Preset: **{preset.name}**: {preset.description}. {notice}".rstrip()


def panel_text(report: Report) -> str:
    """What the preparation has done so far, one line per step."""
    steps = "".join(f"\n- {line}" for line in report.steps)
    return f"**Preparing {report.preset}**: Search turns on by itself when it is ready.{steps}"


def preparing_panel(preparation: Preparation) -> gr.Markdown:
    """The progress panel, laid out where it is called (under the preset line); ``wire_preparing`` feeds it."""
    report = preparation.report()
    return gr.Markdown(panel_text(report), visible=not report.done, elem_id="preparing")


def wire_preparing(
    demo: gr.Blocks,
    engine: Engine,
    preparation: Preparation,
    panel: gr.Markdown,
    line: gr.Markdown,
    session: gr.State,
    search: SearchTab,
    serve: Callable[[Sequence[str]], None],
) -> None:
    """Refresh ``panel``, the preset ``line`` and the Search tab from the preparation, on load and every tick.

    Args:
        serve: makes folders servable (``cascade_ui.page.serve_in_place``): the fallback's gallery, after a switch.
    """
    done = preparation.report().done
    timer = gr.Timer(POLL_S, active=not done)
    for button in search.buttons:  # off in the page as served: a click before the first refresh would only be refused
        button.interactive = done
    shown = gr.State(engine.preset.name)  # the preset this page's builder is set for

    def refresh(shown_name: str) -> dict:
        report = preparation.report()
        updates = {
            panel: gr.Markdown(panel_text(report), visible=not report.done),
            timer: gr.Timer(active=not report.done),
            **{button: gr.Button(interactive=report.done) for button in search.buttons},
        }
        if report.phase is Phase.SWITCHED:
            updates[line] = gr.Markdown(preset_line(engine.preset, report.notice))
            if shown_name != engine.preset.name:
                serve(engine.allowed_paths())
                choice = engine.default_choice()
                updates |= _builder_values(engine, search.controls)
                updates |= {shown: engine.preset.name, session: Session(choice)}
                updates[search.status] = gr.Markdown(f"Cascade: {describe_choice(choice)}")
        return updates

    outputs = [panel, timer, line, shown, session, search.status, *search.buttons, *_builder(search.controls)]
    timer.tick(refresh, shown, outputs, **PRIVATE)
    demo.load(refresh, shown, outputs, **PRIVATE)


def _builder(c: CascadeControls) -> list:
    inputs = c.inputs
    return [c.preset, inputs.gallery, inputs.n_levels, *inputs.names, *inputs.ks, inputs.rerank, inputs.rerank_name]


def _builder_values(engine: Engine, c: CascadeControls) -> dict:
    """The builder set to the engine's preset, as ``cascade_ui.controls`` lays it out for a page built on it."""
    preset, inputs = engine.preset, c.inputs
    bi_names, cross_names = engine.encoder_names()
    updates = {
        c.preset: gr.Dropdown([preset.name, "custom"], value=preset.name),
        inputs.gallery: DEFAULT_GALLERY,
        inputs.n_levels: len(preset.levels),
        inputs.rerank: False,
        inputs.rerank_name: gr.Dropdown(cross_names or [""], value=preset.reranker or (cross_names or [""])[0]),
    }
    for name_box, k_box, level, k in zip(inputs.names, inputs.ks, preset.levels, preset.ks, strict=False):
        updates[name_box] = gr.Dropdown(bi_names, value=level)
        updates[k_box] = k
    return updates
