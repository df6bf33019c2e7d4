"""The lecture notebook: committed without outputs, and executed whole (nbclient, the venv's own kernel) with
its figures and figures of merit checked against what this test computes by other means."""

from __future__ import annotations

import base64
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from analysis import presets
from analysis.cascades import WORLD, Cascades, Choice
from analysis.replay import workload
from cascade.encoders import create_encoder

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "cascades.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"
SMALL, MEDIUM, LARGE, CROSS = "shapes:small", "shapes:medium", "shapes:large", "shapes:cross"
# The notebook's choices, restated: its replay (section 2), its Eq. 1 target (section 4), its CrispSearch k.
REPLAY_QUERIES, REPLAY_SEED, K1 = 300, 0, 15
EQ1_K1, EQ1_TARGET = 50, 2.0
CRISP_K = 100
# Table 1's lifetime reductions as the paper prints them (Section 4); the notebook's "paper MACs" must match.
PRINTED_LIFETIME = {
    "CLIP, ViT [B/16]": 15.8,
    "CLIP, ViT [L/14]": 3.4,
    "CLIP, ViT [L/14, g/14]": 2.6,
    "CLIP, ViT [B/16, g/14]": 6.1,
    "CLIP, ViT [B/16, L/14, g/14]": 5.2,
    "CLIP, ConvNeXt [B]": 9.9,
    "CLIP, ConvNeXt [L]": 4.4,
    "CLIP, ConvNeXt [L, XXL]": 3.1,
    "CLIP, ConvNeXt [B, XXL]": 5.0,
    "CLIP, ConvNeXt [B, L, XXL]": 4.5,
    "BLIP [B]": 3.5,
    "BLIP [B, L]": 2.6,
}


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code"
    for cell in code:
        assert cell.outputs == [], f"{cell.id} keeps its outputs: strip them before committing"
        assert cell.execution_count is None, f"{cell.id} keeps its execution count"
        assert "execution" not in cell.metadata, f"{cell.id} keeps execution timings"
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.fixture(scope="module")
def cache_folder(tmp_path_factory) -> Path:
    """One cache folder for the notebook's kernel and this test: the world gallery is generated once."""
    return tmp_path_factory.mktemp("notebook-cache")


@pytest.fixture(scope="module")
def executed(tmp_path_factory, cache_folder) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook run top to bottom in a temporary working folder, as a student's kernel would run it."""
    workdir = tmp_path_factory.mktemp("notebook-run")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "CASCADE_CACHE_DIR": str(cache_folder),
        # The kernel starts in a temporary folder: it imports this checkout, whatever the venv installed.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # "python3" is ipykernel's own spec, launched with the interpreter running this test (jupyter_client
    # swaps a spec's bare "python" for sys.executable): a machine with only the venv needs nothing registered.
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    return notebook, workdir


def _tagged(notebook: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    cells = [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]
    assert len(cells) == 1, f"one cell tagged {tag!r} expected, found {len(cells)}"
    return cells[0]


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(out.text for out in cell.outputs if out.output_type == "stream" and out.name == "stdout")


def _all_text(notebook: nbformat.NotebookNode) -> str:
    return "".join(_text(cell) for cell in notebook.cells if cell.cell_type == "code")


def _figures(cell: nbformat.NotebookNode) -> list[dict]:
    return [out.data[PLOTLY] for out in cell.outputs if "data" in out and PLOTLY in out.data]


def _values(array) -> list:
    """A trace's x or y: plotly writes numeric arrays as base64 typed arrays."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])).tolist()
    return list(array)


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"no line matching {pattern!r} in:\n{text}"
    return float(found.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def level1_tops(cache_folder) -> tuple[list[str], dict[str, frozenset[str]], int]:
    """The notebook's replay queries and each one's top k_1 under shapes:small alone, by a separate searcher.

    Level 1 of [small, large] ranks exactly as small alone, so this is what that cascade hands level 2.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CASCADE_CACHE_DIR", str(cache_folder))
        cascades = Cascades.in_memory(presets.get("shapes"))
        corpus = cascades.corpus(WORLD)
        queries = workload(corpus, "zipf", REPLAY_QUERIES, REPLAY_SEED)
        alone = Choice(WORLD, (SMALL,), (K1,))
        tops = {query: frozenset(cascades.search(alone, query).result.ids) for query in set(queries)}
    return queries, tops, len(corpus)


@pytest.mark.slow
def test_the_kernel_is_this_interpreter(executed):
    notebook, _ = executed
    assert f"at {sys.executable}\n" in _all_text(notebook)


@pytest.mark.slow
def test_algorithm_1_shows_each_levels_ranking_as_images(executed):
    notebook, _ = executed
    cell = _tagged(notebook, "algorithm1")
    (figure,) = _figures(cell)
    assert [trace["type"] for trace in figure["data"]] == ["image"] * (3 * 8)  # 3 levels, 8 thumbnails each
    text = _all_text(notebook)
    assert re.search(r"level 1 ranked it \d+\w\w of 5,000, level 2 put it \d+\w\w of 50", text)
    assert "level 2, shapes:medium: ranked 50 candidates, kept 16, embedded 50 new images" in text


@pytest.mark.slow
def test_alpha_is_the_share_of_the_gallery_level_1_handed_on(executed, level1_tops):
    notebook, _ = executed
    queries, tops, n_images = level1_tops
    expected = len(frozenset().union(*tops.values())) / n_images
    text = _all_text(notebook)
    assert _number(r"alpha measured on the replay: ([\d.]+)", text) == round(expected, 4)
    assert _number(r"alpha read back from the query log: ([\d.]+)", text) == round(expected, 4)
    assert _number(r"bound, distinct queries x k_1 / N: ([\d.]+)", text) == round(len(tops) * K1 / n_images, 4)
    (figure,) = _figures(_tagged(notebook, "alpha"))
    measured = _values(figure["data"][0]["y"])
    assert len(measured) == REPLAY_QUERIES
    assert measured[-1] == pytest.approx(expected)
    assert all(later >= earlier for earlier, later in zip(measured, measured[1:]))


@pytest.mark.slow
def test_the_lifetime_curve_breaks_even_with_medium_where_the_misses_say(executed, level1_tops):
    notebook, _ = executed
    queries, tops, n_images = level1_tops
    small, medium, large = (create_encoder(name).image_macs for name in (SMALL, MEDIUM, LARGE))
    handed, crossing = set(), None
    for number, query in enumerate(queries, start=1):  # build + each image level 2 sees for the first time
        handed |= tops[query]
        if crossing is None and n_images * small + len(handed) * large >= n_images * medium:
            crossing = number
    assert crossing is not None
    cell = _tagged(notebook, "lifetime")
    text = _text(cell)
    assert f"break-even with shapes:medium alone: query {crossing}\n" in text
    assert "break-even with shapes:small alone: at build" in text
    assert "break-even with shapes:large alone: never" in text  # alpha stays below 1 - C_small / C_large
    (figure,) = _figures(cell)
    names = [trace["name"] for trace in figure["data"] if trace.get("name")]  # break-even markers are unnamed
    assert names == ["cascade", "shapes:small alone", "shapes:medium alone", "shapes:large alone"]
    assert sum(trace.get("mode") == "markers" for trace in figure["data"]) == 1  # one crossing: medium's
    cascade = _values(figure["data"][0]["y"])
    assert len(cascade) == REPLAY_QUERIES + 1
    assert cascade[0] == n_images * small and cascade[-1] == n_images * small + len(handed) * large


@pytest.mark.slow
def test_eq1_factor_and_k2_follow_from_the_encoders_macs(executed):
    notebook, _ = executed
    medium, large = (create_encoder(name).image_macs for name in (MEDIUM, LARGE))
    k2 = math.ceil(EQ1_K1 * (1 / EQ1_TARGET - medium / large))
    factor = EQ1_K1 * large / (EQ1_K1 * medium + k2 * large)
    cell = _tagged(notebook, "eq1")
    text = _text(cell)
    assert _number(r"k_2 from Eq. 1 for a 2x target: (\d+)", text) == k2
    assert _number(r"Eq. 1 early-latency factor of .*: ([\d.]+)x", text) == round(factor, 3)
    per_query, cumulative = _figures(cell)
    assert [trace["type"] for trace in per_query["data"]] == ["bar", "bar"]
    first = [_values(trace["y"])[0] for trace in per_query["data"]]  # the first query: every candidate a miss
    assert first == [EQ1_K1 * large, EQ1_K1 * medium + k2 * large]
    assert len(cumulative["data"]) >= 4  # measured and modelled, for both configurations


@pytest.mark.slow
def test_table1_paper_macs_reproduce_the_printed_figures(executed):
    notebook, _ = executed
    cell = _tagged(notebook, "table1")
    (figure,) = _figures(cell)
    bars = {trace["name"]: dict(zip(_values(trace["x"]), _values(trace["y"]))) for trace in figure["data"]}
    assert set(bars) == {"paper MACs", "full MACs", "printed in Table 1"}
    for row, printed in PRINTED_LIFETIME.items():
        # The paper rounds to one decimal, the notebook's table to two (2.55 is printed 2.6).
        assert bars["paper MACs"][row] == pytest.approx(printed, abs=0.051), row
    # Full MACs add the attention THOP misses: ViTs get dearer; ConvNeXt has no attention and stays put.
    assert bars["full MACs"]["CLIP, ViT [B/16, g/14]"] != pytest.approx(bars["paper MACs"]["CLIP, ViT [B/16, g/14]"])
    assert bars["full MACs"]["CLIP, ConvNeXt [B, XXL]"] == pytest.approx(bars["paper MACs"]["CLIP, ConvNeXt [B, XXL]"])
    text = _text(cell)
    assert "CLIP, ViT [B/16, L/14, g/14]: 1.75x paper MACs" in text
    assert "CLIP, ConvNeXt [B, L, XXL]: 1.97x paper MACs" in text


@pytest.mark.slow
def test_crispsearch_speedup_is_the_pairs_it_spares(executed, level1_tops):
    notebook, _ = executed
    n_images = level1_tops[2]
    small, cross = create_encoder(SMALL), create_encoder(CROSS)
    cascade = small.text_macs + n_images * small.dim + cross.query_macs + CRISP_K * cross.pair_macs
    alone = cross.query_macs + n_images * cross.pair_macs
    cell = _tagged(notebook, "crisp")
    text = _text(cell)
    assert f"MACs per warm query: cascade {cascade:,}, cross-encoder alone {alone:,}" in text
    assert _number(r"CrispSearch speedup in MACs: ([\d.]+)x", text) == round(alone / cascade, 1)
    (figure,) = _figures(cell)
    assert [trace["type"] for trace in figure["data"]] == ["image"] * (2 * 8)  # the bi-encoder and the re-ranker


@pytest.mark.slow
def test_the_notebook_writes_its_database_to_a_temporary_folder_and_removes_it(executed):
    notebook, workdir = executed
    database = Path(re.search(r"database: (\S+)", _all_text(notebook)).group(1))
    assert database.is_relative_to(tempfile.gettempdir())
    assert not database.parent.exists()  # its last cell cleans up
    assert not list(workdir.rglob("*.duckdb"))  # nothing beside the notebook either
