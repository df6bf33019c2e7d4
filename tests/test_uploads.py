"""Bounded uploads: Gradio refuses a file over the limit before storing it, a session's files are counted, a
refused upload says so in the page, and old uploads are cleaned (``cascade_ui/uploads.py``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from PIL import Image

from cascade_ui import uploads
from cascade_ui.uploads import MIB, Ledger, UploadLimit, admit

TWENTY_MIB = 20 * 2**20  # the query log's limit (analysis/query_logs.py), which Gradio's limit must admit


def _tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its size: what is stored."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def upload_dir(tmp_path, monkeypatch) -> Path:
    """Gradio's upload folder, this test's own (Gradio reads GRADIO_TEMP_DIR when the app is created)."""
    folder = tmp_path / "gradio-uploads"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


@pytest.fixture
def page(engine, upload_dir):
    """``(engine, demo)``: the page served with ``upload_dir`` as Gradio's upload folder."""
    import app
    from tests.app_engine import free_port

    demo = app.launch(engine, port=free_port(), block=False)
    yield engine, demo
    demo.close()


def test_the_limits_fit_photos_and_the_query_log():
    assert uploads.MAX_FILE_BYTES == TWENTY_MIB  # a 20 MiB query log passes Gradio's limit, one byte more does not
    assert uploads.IMAGES.total_bytes >= uploads.MAX_FILE_BYTES and uploads.IMAGES.files >= 10
    assert uploads.QUERY_LOGS.total_bytes >= TWENTY_MIB
    assert uploads.VISITOR_BYTES == uploads.IMAGES.total_bytes + uploads.QUERY_LOGS.total_bytes
    every, age = uploads.DELETE_CACHE
    assert 0 < every <= age


def test_the_readme_quotes_the_limits():
    from tests.conftest import ROOT

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    images, logs = uploads.IMAGES, uploads.QUERY_LOGS
    assert f"`max_file_size` ({uploads.MAX_FILE_BYTES // MIB} MiB:" in readme
    assert f"store {images.files} images ({images.total_bytes // MIB} MiB in all)" in readme
    assert f"and {logs.files} query logs ({logs.total_bytes // MIB} MiB)" in readme
    assert f"upload folder holds {uploads.MAX_STORED_BYTES // (1024 * MIB)} GiB" in readme
    assert "older than an hour (`delete_cache`)" in readme and uploads.DELETE_CACHE[1] == 3600


def test_an_upload_over_the_limit_is_refused_before_it_is_stored(page, upload_dir):
    _, demo = page
    route = f"{demo.local_url}gradio_api/upload"
    with httpx.Client(timeout=60) as http:
        before = _tree(upload_dir)
        over = http.post(route, files={"files": ("big.txt", b"q\n" * (TWENTY_MIB // 2) + b"x")})
        assert over.status_code == 413, over.text
        assert "maximum allowed size" in over.text
        assert _tree(upload_dir) == before  # nothing stored, not even the part that arrived
        # The same route takes a file at the limit, and stores it there: the folder watched is the right one.
        at_limit = http.post(route, files={"files": ("log.txt", b"q\n" * (TWENTY_MIB // 2))})
        assert at_limit.status_code == 200, at_limit.text
    (stored,) = at_limit.json()
    assert Path(stored).parent.parent == upload_dir
    assert _tree(upload_dir) == {**before, str(Path(stored).relative_to(upload_dir)): TWENTY_MIB}


def test_uploads_stop_when_their_folder_is_full(page, upload_dir, monkeypatch):
    """Whoever posts, however often: past ``MAX_STORED_BYTES`` in the folder, the route stores nothing more."""
    _, demo = page
    route = f"{demo.local_url}gradio_api/upload"
    with httpx.Client(timeout=60) as http:
        assert http.post(route, files={"files": ("a.txt", b"a" * 3000)}).status_code == 200
        before = _tree(upload_dir)
        held = sum(before.values())
        assert held >= 3000
        monkeypatch.setattr(uploads, "MAX_STORED_BYTES", held + 2000)
        full = http.post(route, files={"files": ("b.txt", b"b" * 3000)})
        assert full.status_code == 507 and "full" in full.text
        assert _tree(upload_dir) == before
        assert http.post(route, files={"files": ("c.txt", b"c" * 1000)}).status_code == 200  # fits beside them


def test_the_page_deletes_old_uploads(page):
    _, demo = page
    assert demo.delete_cache == uploads.DELETE_CACHE
    assert demo.max_file_size == uploads.MAX_FILE_BYTES


def _uploaded(upload_dir: Path, name: str, size: int) -> str:
    """A file as Gradio stores an upload: ``<folder>/<hash>/<name>``."""
    path = upload_dir / f"hash-{name}" / name
    path.parent.mkdir()
    path.write_bytes(b"x" * size)
    return str(path)


def test_a_session_stores_at_most_its_count(upload_dir):
    limit = UploadLimit("images", files=3, total_bytes=100 * MIB)
    paths = [_uploaded(upload_dir, f"{i}.png", 10) for i in range(5)]
    first = admit(paths[:2], Ledger(), limit)
    assert first.kept == tuple(paths[:2]) and first.refused == () and first.message == ""
    assert (first.ledger.files, first.ledger.total_bytes) == (2, 20)
    # The box now holds all five (two counted already): one more fits, the last two are refused and deleted.
    second = admit(paths, first.ledger, limit)
    assert second.kept == tuple(paths[:3]) and second.refused == tuple(paths[3:])
    assert (second.ledger.files, second.ledger.total_bytes) == (3, 30)
    assert [Path(p).exists() for p in paths] == [True, True, True, False, False]
    assert not Path(paths[3]).parent.exists()  # the hash folder goes with its file
    assert second.message.startswith("Not stored: 3.png, 4.png (2 file(s)). A visitor may upload at most 3 images")
    # Removing files from the page frees nothing: they stay on disk until Gradio's delete_cache.
    assert admit(paths[3:4], second.ledger, limit).refused == (paths[3],)


def test_a_session_stores_at_most_its_total(upload_dir):
    limit = UploadLimit("query logs", files=10, total_bytes=100)
    small, large, last = (_uploaded(upload_dir, name, size) for name, size in (("a", 60), ("b", 50), ("c", 40)))
    done = admit([small, large, last], Ledger(), limit)
    assert done.kept == (small, last) and done.refused == (large,)  # 60 + 50 > 100; 60 + 40 fits
    assert done.ledger.total_bytes == 100 and "100 MiB" not in done.message and "query logs" in done.message


def test_only_files_in_the_upload_folder_are_ever_deleted(upload_dir, tmp_path):
    outside = tmp_path / "mine.png"
    outside.write_bytes(b"x" * 10)
    done = admit([str(outside)], Ledger(), UploadLimit("images", files=0, total_bytes=0))
    assert done.refused == (str(outside),) and outside.exists()


def test_a_refused_query_log_says_so_and_is_not_replayed(client, served, monkeypatch, tmp_path):
    """Through the /replay_file API (one session): the second log passes the session's count of one."""
    from gradio_client import handle_file

    engine, _ = served
    monkeypatch.setattr(uploads, "QUERY_LOGS", UploadLimit("query logs", files=1, total_bytes=TWENTY_MIB))
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("a red circle\n", encoding="utf-8")
    second.write_text("a blue square\n", encoding="utf-8")
    *_, status = client.predict(handle_file(str(first)), api_name="/replay_file")
    assert "1 file:first.txt queries" in status
    *_, status = client.predict(handle_file(str(second)), api_name="/replay_file")
    assert status.startswith("**Replay:** Not stored: second.txt (1 file(s)). A visitor may upload at most 1 query")
    assert int(engine.store.frame("SELECT count(*) AS n FROM queries")["n"].iloc[0]) == 1


@pytest.mark.browser
@pytest.mark.slow
def test_a_refused_upload_shows_its_message_in_the_page(page, upload_dir, monkeypatch, tmp_path):
    """Three images where the session may store two: the box keeps two, the page names the third, which is
    deleted; a file over Gradio's limit is refused by the page before it is sent."""
    from tests.test_browser import WAIT_MS, browser_page

    _, demo = page
    monkeypatch.setattr(uploads, "IMAGES", UploadLimit("images", files=2, total_bytes=100 * MIB))
    images = []
    for i, colour in enumerate(("red", "green", "blue")):
        images.append(tmp_path / f"{i}-{colour}.png")
        Image.new("RGB", (32, 32), colour).save(images[-1])
    huge = tmp_path / "huge.png"
    with huge.open("wb") as out:
        out.truncate(uploads.MAX_FILE_BYTES + 1)
    with browser_page() as browser:
        browser.goto(demo.local_url, timeout=WAIT_MS)
        browser.locator("#gallery").get_by_text("uploaded images").click()
        browser.locator("#uploads input[type=file]").set_input_files([str(p) for p in images])
        browser.wait_for_function("(document.querySelector('#upload-status')?.innerText || '').includes('Not stored')")
        note = browser.locator("#upload-status").inner_text()
        assert "Upload refused: Not stored: 2-blue.png (1 file(s))" in note and "at most 2 images" in note
        browser.wait_for_function("(document.querySelector('#search-status')?.innerText || '').includes('uploaded')")
        stored = sorted(p.name for p in upload_dir.rglob("*.png"))
        assert stored == ["0-red.png", "1-green.png"]
        # The session's gallery is the two kept: a search ranks exactly them.
        browser.locator("#query textarea").fill("a red square")
        browser.locator("#search-button").click()
        browser.wait_for_function("document.querySelectorAll('#stage-2 img').length === 2")
        assert browser.locator("#stage-1 img").count() == 2
        browser.reload(timeout=WAIT_MS)  # a new session, an empty box
        browser.locator("#gallery").get_by_text("uploaded images").click()
        browser.locator("#uploads input[type=file]").set_input_files(str(huge))
        browser.get_by_text("exceed the maximum allowed size").wait_for()
    assert not any(p.name == "huge.png" for p in upload_dir.rglob("*"))
