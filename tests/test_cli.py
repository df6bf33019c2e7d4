"""``python -m cascade``: end to end on tiny random OpenCLIP models and generated data."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import duckdb
import numpy as np
import pytest

from analysis.evaluate import caption_queries
from analysis.store import Store
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade_cli import main
from tests.conftest import ROOT
from tests.fakes import count_features, make_gallery, make_karpathy

SMALL, MEDIUM = "openclip:tiny-vit-s@random", "openclip:tiny-vit-m@random"
pytestmark = pytest.mark.slow


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cascade", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    folder = make_gallery(tmp_path_factory.mktemp("cli") / "gallery", 30)[0].parent
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return folder


def test_search_end_to_end_and_restart_reuses_the_cache(tmp_path, gallery, capsys):
    db = str(tmp_path / "db.duckdb")
    args = ["search", "a red circle", "--images", str(gallery), "--levels", f"{SMALL},{MEDIUM}", "--ks", "10,3"]
    assert main([*args, "--db", db, "--json", "--quiet"]) == 0  # here; the restart below is a new process
    first_out, first_err = capsys.readouterr()
    payload = json.loads(first_out)
    assert payload["query"] == "a red circle"
    assert [level["encoder"] for level in payload["levels"]] == [f"{SMALL}0", f"{MEDIUM}0"]
    level1, level2 = payload["levels"]
    assert set(level2) == {"encoder", "k", "candidates", "hits", "misses", "image_macs", "text_macs", "latency_ms",
                           "results"}  # fmt: skip
    assert (level1["candidates"], level2["candidates"], level2["misses"]) == (30, 10, 10)
    assert len(level2["results"]) == 3 and all(Path(r["path"]).is_file() for r in level2["results"])
    assert {r["path"] for r in level2["results"]} <= {r["path"] for r in level1["results"]}
    assert "skipped 2 unreadable or non-image file(s)" in first_err

    second = json.loads(run_cli(*args, "--db", db, "--json", "--quiet").stdout)  # a new process
    assert [level["misses"] for level in second["levels"]] == [0, 0]
    assert [level["image_macs"] for level in second["levels"]] == [0, 0]
    assert second["levels"][1]["results"] == level2["results"]

    assert main(["log", "--db", db, "--json"]) == 0  # in this process: the two searches' processes have ended
    log = json.loads(capsys.readouterr().out)
    assert [q["query"] for q in log["queries"]] == ["a red circle", "a red circle"]
    (config,) = log["configs"]
    assert config["queries"] == 2
    assert config["cumulative_image_macs"] == config["build_image_macs"] + level2["image_macs"]


def hand_cascade(corpus: Corpus, texts: list[str], names: tuple[str, str], ks: tuple[int, int]) -> tuple:
    """Algorithm 1 for two bi-encoders, by hand: (each text's final top positions, the positions handed to level 2)."""
    small, medium = (create_encoder(name) for name in names)
    images = [corpus.load(image_id) for image_id in corpus.ids]
    first = np.argsort(-(small.encode_texts(texts) @ small.encode_images(images).T), axis=1, kind="stable")[:, : ks[0]]
    second_scores = medium.encode_texts(texts) @ medium.encode_images(images).T
    final = [row[np.argsort(-second_scores[i, row], kind="stable")][: ks[1]] for i, row in enumerate(first)]
    return final, set(first.ravel().tolist())


def test_eval_end_to_end_on_a_karpathy_dataset(tmp_path, capsys):
    json_path, root = make_karpathy(tmp_path, n_images=25, captions_per_image=2)
    db = str(tmp_path / "db.duckdb")
    code = main(["eval", "--dataset", f"karpathy:{json_path}", "--images", str(root), "--levels",
                 f"{SMALL},{MEDIUM}", "--ks", "15,10", "--db", db, "--json", "--quiet"])  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"levels", "ks", "r1", "r5", "r10", "image_macs", "alpha"}
    assert payload["ks"] == [15, 10]

    corpus = Corpus.from_karpathy(json_path, root)
    texts, positives = caption_queries(corpus)
    final, handed = hand_cascade(corpus, texts, (SMALL, MEDIUM), (15, 10))
    for k in (1, 5, 10):  # "recall" as CLIP papers mean it: the caption's own image among the top k
        assert payload[f"r{k}"] == pytest.approx(100 * np.mean([p in row[:k] for p, row in zip(positives, final)]))
    assert payload["alpha"] == pytest.approx(len(handed) / 25)
    small, medium = create_encoder(SMALL), create_encoder(MEDIUM)
    assert payload["image_macs"] == 25 * small.image_macs + len(handed) * medium.image_macs
    with Store(db, read_only=True) as store:
        saved = store.evaluations()
    assert len(saved) == 1 and saved["n_queries"][0] == 50 and saved["r10"][0] == payload["r10"]


def test_index_reports_and_skips_unreadable_files(tmp_path, gallery, capsys):
    db = str(tmp_path / "db.duckdb")
    assert main(["index", "--images", str(gallery), "--levels", SMALL, "--db", db, "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"images": 30, "embedded": 30, "reused": 0, "skipped": 2}
    assert captured.err.count("warning: skipped 2") == 1
    assert main(["index", "--images", str(gallery), "--levels", SMALL, "--db", db, "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["reused"] == 30


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "q", "--images", "/no/such/folder", "--levels", SMALL, "--ks", "5"], "image folder not found"),
        (["search", "   ", "--levels", SMALL, "--ks", "5"], "the query is empty"),
        (["search", "q", "--images", "{gallery}", "--levels", f"{SMALL},{MEDIUM}", "--ks", "3,10"], "must not grow"),
        (["search", "q", "--images", "{gallery}", "--levels", f"{SMALL},{MEDIUM}", "--ks", "10"], "one k per level"),
        (["search", "q", "--images", "{gallery}", "--levels", "openclip:tiny-vit-x@random", "--ks", "5"],
         "did you mean"),
        (["search", "q", "--images", "{gallery}", "--levels", "nosuch:thing", "--ks", "5"], "unknown encoder backend"),
        (["search", "q", "--images", "{empty}", "--levels", SMALL, "--ks", "5"], "no readable images"),
        (["log", "--db", "{tmp}/absent.duckdb"], "no database"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_1(tmp_path, gallery, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    fill = {"{gallery}": str(gallery), "{empty}": str(tmp_path / "empty"), "{tmp}": str(tmp_path)}
    argv = [fill.get(a, a.replace("{tmp}", str(tmp_path))) for a in argv]
    if "--db" not in argv:
        argv += ["--db", str(tmp_path / "db.duckdb")]
    assert main(argv + ["--quiet"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], lines
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), lines


def test_bad_ks_syntax_is_a_usage_error(tmp_path, capsys):
    assert main(["search", "q", "--levels", SMALL, "--ks", "10,x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cascade search: ") and "expected whole numbers" in err
    assert len(err.strip().splitlines()) == 1


def test_ks_larger_than_the_gallery_are_cut_to_it_and_said(gallery, tmp_path, capsys):
    """One rule for both faces (``Cascades.fitted``): a gallery smaller than k_1 cuts every k to its size."""
    argv = ["search", "q", "--images", str(gallery), "--levels", f"{SMALL},{MEDIUM}", "--ks", "40,31"]
    assert main([*argv, "--db", str(tmp_path / "db.duckdb"), "--json", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert [level["k"] for level in json.loads(out)["levels"]] == [30, 30]  # the gallery holds 30 readable images
    assert "note: ks [40, 31] cut to [30, 30]: the gallery has 30 images" in err


def test_database_locked_by_another_process(tmp_path, gallery):
    db = tmp_path / "db.duckdb"
    holder = duckdb.connect(str(db))
    try:
        out = run_cli("index", "--images", str(gallery), "--levels", SMALL, "--db", str(db), "--quiet")
    finally:
        holder.close()
    assert out.returncode == 1
    assert "in use by another process" in out.stderr and "Traceback" not in out.stderr


N_BIG = 2500


def test_killed_index_resumes_without_recomputing(tmp_path, capsys):
    # Big enough that the index runs for seconds: the watcher below reads its progress bar and must
    # kill it mid-way, however fast the machine. Its first bar past 96 images comes at ~160 here
    # (2,500 images take ~2.5 s on a core); the kill window runs to half the gallery.
    folder = make_gallery(tmp_path / "big", N_BIG, seed=5)[0].parent
    db = tmp_path / "db.duckdb"
    cmd = [sys.executable, "-m", "cascade", "index", "--images", str(folder), "--levels", SMALL, "--db", str(db)]
    # stderr on a pseudo-terminal, as a user's: into a pipe the bar writes one line when the step ends.
    reader, writer = pty.openpty()
    fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=writer, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    os.close(writer)
    seen = threading.Event()

    def watch() -> None:  # kill once the progress bar shows some batches committed
        buffer = ""
        while chunk := _read_pty(reader):
            buffer = buffer[-200:] + chunk
            match = re.findall(rf"embedding:\s+\d+%\|[^|]*\|\s*(\d+)/{N_BIG}", buffer)  # "12%|█▏    | 480/4000"
            if match and 96 <= int(match[-1]) < N_BIG // 2:
                seen.set()
                proc.send_signal(signal.SIGKILL)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    proc.wait(timeout=300)
    watcher.join(timeout=5)
    os.close(reader)
    assert seen.is_set(), "index finished before it could be killed"

    with Store(db, read_only=True) as store:  # the killed run left a clean, partial cache
        done = count_features(store, f"{SMALL}0")
    assert 96 <= done < N_BIG

    assert main(["index", "--images", str(folder), "--levels", SMALL, "--db", str(db), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "images": N_BIG,
        "embedded": N_BIG - done,
        "reused": done,
        "skipped": 0,
    }

    fresh_db = tmp_path / "fresh.duckdb"  # the same command uninterrupted (in this process: the same code)
    assert main(["index", "--images", str(folder), "--levels", SMALL, "--db", str(fresh_db), "--quiet"]) == 0
    query = "SELECT image_id, data FROM features ORDER BY image_id"
    with Store(db, read_only=True) as a, Store(fresh_db, read_only=True) as b:
        resumed_rows, fresh_rows = a.frame(query), b.frame(query)
    assert resumed_rows["image_id"].tolist() == fresh_rows["image_id"].tolist()
    assert resumed_rows["data"].tolist() == fresh_rows["data"].tolist()


def _read_pty(fd: int) -> str:
    """What the child wrote to its terminal since the last read; "" once it has closed it."""
    try:
        return os.read(fd, 4096).decode(errors="replace")
    except OSError:  # EIO: the child exited and closed the terminal
        return ""
