"""Table 1: every printed cost figure of the paper, the full-mode correction, and the command line."""

import json

import pytest

from analysis import table1
from analysis.table1 import EncoderSpec, Family, build_table1
from cascade_cli import main

# The paper's Table 1, as printed (lifetime reduction to 1 decimal, early latency to 2).
PAPER_SINGLES = {
    "ViT-g-14": 1.0,
    "ViT-B-16": 15.8,
    "ViT-L-14": 3.4,
    "convnext_xxlarge": 1.0,
    "convnext_base_w": 9.9,
    "convnext_large_d": 4.4,
    "blip-large": 1.0,
    "blip-base": 3.5,
}
PAPER_CASCADES = {
    ("ViT-L-14", "ViT-g-14"): (2.6, None),
    ("ViT-B-16", "ViT-g-14"): (6.1, None),
    ("ViT-B-16", "ViT-L-14", "ViT-g-14"): (5.2, 1.75),
    ("convnext_large_d", "convnext_xxlarge"): (3.1, None),
    ("convnext_base_w", "convnext_xxlarge"): (5.0, None),
    ("convnext_base_w", "convnext_large_d", "convnext_xxlarge"): (4.5, 1.97),
    ("blip-base", "blip-large"): (2.6, None),
}


@pytest.fixture(scope="module")
def paper():
    return build_table1("paper")


@pytest.fixture(scope="module")
def full():
    return build_table1("full")


def printed(table):
    singles = {row.name: round(row.lifetime_reduction, 1) for row in table.singles}
    cascades = {
        row.levels: (
            round(row.lifetime_reduction, 1),
            None if row.early_latency_reduction is None else round(row.early_latency_reduction, 2),
        )
        for row in table.cascades
    }
    return singles, cascades


def test_paper_mode_matches_every_printed_figure(paper):
    singles, cascades = printed(paper)
    assert singles == PAPER_SINGLES
    assert cascades == PAPER_CASCADES


def test_paper_mode_encoders_and_resolutions(paper):
    rows = {row.name: row for row in paper.encoders}
    assert {name: row.resolution for name, row in rows.items()} == {
        "ViT-B-16": 224, "ViT-L-14": 224, "ViT-g-14": 224,
        "convnext_base_w": 256, "convnext_large_d": 256, "convnext_xxlarge": 256,
        "blip-base": 384, "blip-large": 384,
    }  # fmt: skip
    assert rows["ViT-B-16"].image_gmacs == pytest.approx(11.270, abs=1e-3)
    assert rows["convnext_xxlarge"].image_gmacs == pytest.approx(197.969, abs=1e-3)


def test_ks_follow_the_papers_notation(paper):
    ks = {row.levels: row.ks for row in paper.cascades}
    assert ks[("ViT-B-16", "ViT-g-14")] == (50,)
    assert ks[("ViT-B-16", "ViT-L-14", "ViT-g-14")] == (50, 14)


def test_full_mode_makes_transformers_dearer_and_leaves_convnext(paper, full):
    paper_gmacs = {row.name: row.image_gmacs for row in paper.encoders}
    full_gmacs = {row.name: row.image_gmacs for row in full.encoders}
    for name in ("ViT-B-16", "ViT-L-14", "ViT-g-14"):
        assert full_gmacs[name] > 1.4 * paper_gmacs[name]  # THOP misses a third of a ViT's MACs
    for name in ("blip-base", "blip-large"):
        assert full_gmacs[name] > 1.05 * paper_gmacs[name]  # BLIP's Linears are seen, its matmuls are not
    for name in ("convnext_base_w", "convnext_large_d", "convnext_xxlarge"):
        assert paper_gmacs[name] < full_gmacs[name] < 1.005 * paper_gmacs[name]
    singles, cascades = printed(full)
    assert singles["ViT-B-16"] == 15.2 and cascades[("ViT-B-16", "ViT-L-14", "ViT-g-14")] == (5.1, 1.71)


def test_build_table1_with_injected_costs():
    family = Family(
        title="toy",
        encoders=tuple(EncoderSpec(name, name.upper(), f"fake:{name}", 8) for name in ("s", "m", "l")),
        cascades=(("s", "l"), ("s", "m", "l")),
    )
    gmacs = {"s": 1.0, "m": 4.0, "l": 10.0}
    table = build_table1("full", 0.1, 50, 14, image_gmacs=lambda e, mode: gmacs[e.name], families=[family])
    assert [row.lifetime_reduction for row in table.singles] == pytest.approx([10.0, 2.5, 1.0])
    two, three = table.cascades
    assert two.lifetime_reduction == pytest.approx(5.0) and two.early_latency_reduction is None
    assert three.lifetime_reduction == pytest.approx(10 / 2.4)
    assert three.early_latency_reduction == pytest.approx(50 * 10 / (50 * 4 + 14 * 10))
    text = table1.format_table(table, 50, 14, families=[family])
    assert "[S, M, L]" in text and "1.47x" in text


def test_any_backend_counts_its_own_macs():
    """Table 1 asks the encoder registry: a backend it never names (shapes) is counted like the rest."""
    from cascade import units
    from cascade.encoders import create_encoder

    gmacs = table1.count_image_gmacs(EncoderSpec("small", "S", "shapes:small", 32), "full")
    assert gmacs == units.gmacs(create_encoder("shapes:small").image_macs) > 0


def test_resolution_must_be_native():
    with pytest.raises(ValueError, match="224 px"):
        table1.count_image_gmacs(EncoderSpec("ViT-B-16", "B/16", "openclip:ViT-B-16", 336), "paper")


def test_text_output_is_aligned_and_explains_the_modes(paper, capsys):
    assert main(["table1"]) == 0
    out = capsys.readouterr().out
    assert "15.8x" in out and "1.75x" in out and "1.97x" in out
    assert "THOP misses attention" in out.splitlines()[-1]
    rows = [line for line in out.splitlines() if line.rstrip().endswith("x")]
    assert len({line.rindex("x", 0, 45) for line in rows}) == 1  # the lifetime column lines up


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--macs", "exact"], "invalid choice"),
        (["--alpha", "1.5"], "alpha"),
        (["--k1", "10", "--k2", "20"], "k_1 >= k_2"),
        (["--k1", "many"], "invalid int"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys):
    assert main(["table1", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_the_command_prints_the_table_as_json(capsys):
    assert main(["table1", "--json", "--macs", "paper"]) == 0  # the console script's run: test_console_script
    data = json.loads(capsys.readouterr().out)
    assert data["macs_mode"] == "paper" and data["alpha"] == 0.1
    assert {"name", "resolution", "image_gmacs"} <= set(data["encoders"][0])
    rows = {tuple(row["levels"]): row for row in data["cascades"]}
    deep = rows[("convnext_base_w", "convnext_large_d", "convnext_xxlarge")]
    assert (round(deep["lifetime_reduction"], 1), round(deep["early_latency_reduction"], 2)) == (4.5, 1.97)
    assert rows[("blip-base", "blip-large")]["early_latency_reduction"] is None
    assert deep["ks"] == [50, 14]
    assert {row["name"]: round(row["lifetime_reduction"], 1) for row in data["singles"]} == PAPER_SINGLES
