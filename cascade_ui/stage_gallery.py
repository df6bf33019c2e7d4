"""The Search tab's stage gallery: Gradio's Gallery, with its API schema computed once per process.

Gradio writes a stub (``stage_gallery.pyi``) beside any module that subclasses a component, and keeps
the class in it in step on import; this module holds only the class so the committed stub stays whole.
"""

from __future__ import annotations

import functools

import gradio as gr


class StageGallery(gr.Gallery):
    """A ``gr.Gallery`` whose API schema is computed once per process, not once per search.

    Every search updates each stage gallery's label and visibility, and Gradio answers an
    update by building a fresh component and its config, schema included: Gallery's schema is
    pydantic's ``model_json_schema``, about 5 ms of the server's GIL, twice per gallery, five
    galleries per search (bench/load.py). The schema depends only on the class, so it is shared.
    ``is_template`` makes Gradio name it ``gallery``: the page draws Gradio's own Gallery.
    """

    is_template = True

    def api_info(self) -> dict:
        return StageGallery._schema()

    @staticmethod
    @functools.cache
    def _schema() -> dict:
        return gr.Gallery(render=False).api_info()
