"""The Cost tab's query log upload, through the served app's API: a replay of the file, and bad files refused whole."""

from __future__ import annotations

import pytest
from gradio_client import handle_file

from tests.app_engine import N_IMAGES, expected_levels


def _logged(engine) -> int:
    return int(engine.store.frame("SELECT count(*) AS n FROM queries")["n"].iloc[0])


def test_an_uploaded_log_replays_and_reports_its_measured_alpha(client, served, tmp_path):
    engine, _ = served
    lines = ["a red circle", "a blue square", "", "a red circle"]
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    *_, status = client.predict(handle_file(str(path)), api_name="/replay_file")
    corpus = engine.corpus(engine.default_choice().gallery)
    handed = set().union(*(expected_levels(q, corpus, [("fake:small", 20)])[0][0] for q in set(filter(None, lines))))
    alpha = len(handed) / N_IMAGES
    assert "3 file:mine.txt queries" in status and f"**{alpha:.3f}**" in status and "1 empty line(s)" in status
    assert _logged(engine) == 3
    assert engine.measured_alpha(engine.default_choice()) == pytest.approx(alpha)


@pytest.mark.parametrize(("name", "data", "says"), [
    ("empty.txt", b"", "is empty"),
    ("binary.txt", b"\x00\x01PNG", "binary"),
    ("latin1.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
    ("cols.csv", b"text\nhello\n", "no 'query' column"),
    ("neg.csv", b"query,count\nhello,-1\n", "negative count"),
])  # fmt: skip
def test_a_bad_log_is_one_line_and_logs_nothing(client, served, tmp_path, name, data, says):
    engine, _ = served
    path = tmp_path / name
    path.write_bytes(data)
    *_, status = client.predict(handle_file(str(path)), api_name="/replay_file")
    assert says in status and "\n" not in status.strip()
    assert _logged(engine) == 0


def test_the_cost_tab_shows_real_units_of_the_built_cascade(engine):
    from analysis import hardware

    choice = engine.default_choice()
    assert engine.real_costs(choice, "NVIDIA T4") is None  # nothing built yet
    engine.search(choice, "a red circle")
    costs = engine.real_costs(choice, "NVIDIA T4", efficiency=0.5)
    rate = 65e12 * 0.5 / 2  # MAC/s
    assert costs.build.seconds == pytest.approx(N_IMAGES * 1_000 / rate)
    assert costs.first_query.seconds == pytest.approx(20 * 50_000 / rate)
    assert costs.lifetime.seconds == pytest.approx((N_IMAGES * 1_000 + 20 * 50_000) / rate)  # alpha = 20 / N
    measured = engine.real_costs(choice, hardware.MEASURED, price_per_hour=1.0, power_w=100)
    assert "measured on" in measured.label and measured.build.seconds > 0
