"""The web face's parts: one module per tab, the cascade controls they share, the page's text, and the page.

``page`` assembles the tabs (``build_app``) and serves them; ``app.py`` calls it from ``main()``
once ``HF_HOME`` is set. Each tab hands the page a frozen dataclass of the components it needs.
Everything here only *declares* components and handlers: importing a module builds no engine,
opens no database and loads no model. The direction of imports is
``app.py -> ui -> analysis -> cascade``; nothing below ``cascade_ui`` imports it or gradio.
"""
