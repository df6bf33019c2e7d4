"""Fixtures of the web face's tests: an engine, the app served on loopback, a client of its API.

``tests/conftest.py`` loads them for every test module with ``pytest_plugins`` (import nothing
else from here, so pytest can rewrite its asserts). The app and the engine are imported by the
fixtures, not here: pytest-xdist's controller process loads this module too, and never runs a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from analysis.engine import Engine


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    """An engine on a temporary database: 40 world images, fake encoders (tests/app_engine.py)."""
    from tests.app_engine import make_engine

    engine = make_engine(tmp_path)
    yield engine
    engine.store.close()


@pytest.fixture
def served(engine):
    """``(engine, demo)``: the page for ``engine`` served on a free loopback port until the test ends."""
    import app
    from tests.app_engine import free_port

    demo = app.launch(engine, port=free_port(), block=False)
    yield engine, demo
    demo.close()


@pytest.fixture
def client(served, tmp_path):
    """A ``gradio_client.Client`` of the served page; files it receives land in the test's folder."""
    from gradio_client import Client

    _, demo = served
    return Client(demo.local_url, verbose=False, download_files=str(tmp_path / "downloads"))
