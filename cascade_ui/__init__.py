"""The web face's parts: one module per tab, the cascade controls they share, and the page's text.

``app.py`` assembles them into a page (``build_app``) and serves it. Everything here
only *declares* components and handlers: importing a module builds no engine,
opens no database and loads no model. The direction of imports is
``app.py -> ui -> analysis -> cascade``; nothing below ``cascade_ui`` imports it or gradio.
"""
