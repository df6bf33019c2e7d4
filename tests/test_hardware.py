"""Hardware profiles: MACs -> seconds, money, kWh against hand-computed values; the measured profile's cache."""

import json

import pytest

from analysis import hardware, whatif
from analysis.hardware import HardwareProfile
from cascade import units
from cascade.errors import ConfigError
from cascade_ui.formatting import real_units_summary
from tests.fakes import FakeBiEncoder


def test_unit_conversions_by_hand():
    assert units.flops_from_macs(3) == 6
    assert units.macs_per_s_from_tflops(2.0) == 1e12  # 2e12 FLOP/s = 1e12 MAC/s
    assert units.hours(5400) == 1.5
    assert units.kwh(3600, 1000) == pytest.approx(1.0)  # 1 kW for one hour


def test_accelerator_profile_by_hand():
    t4 = hardware.accelerator_profile("NVIDIA T4", efficiency=0.5)  # 65 dense FP16 TFLOPS in the table
    assert t4.macs_per_s == pytest.approx(65e12 * 0.5 / 2)  # 1.625e13 MAC/s
    work = t4.estimate(1.625e16)  # 1,000 s of T4 at 50%
    assert work.seconds == pytest.approx(1000.0)
    assert work.money == pytest.approx(1000 / 3600 * 0.35)  # the table's illustrative 0.35 USD/h
    assert work.kwh == pytest.approx(70 * 1000 / 3.6e6)  # 70 W for 1,000 s
    assert "50% efficiency" in t4.label and "estimated from MACs" in t4.label


def test_every_profile_is_cited_and_the_default_efficiency_stated():
    table = hardware.accelerators()
    assert {"NVIDIA H100 SXM", "NVIDIA H200 SXM", "NVIDIA A100 SXM 80GB", "NVIDIA L4", "NVIDIA T4"} <= set(table)
    assert all(row.source.count("https://") == 1 and row.dense_tflops > 0 for row in table.values())
    assert hardware.default_efficiency() == 0.3
    assert "30%" in hardware.accelerator_profile("NVIDIA H100 SXM").label


@pytest.mark.parametrize(("efficiency", "name"), [(0.0, "NVIDIA T4"), (1.5, "NVIDIA T4"), (None, "TPU v9")])
def test_bad_profiles(efficiency, name):
    with pytest.raises(ConfigError):
        hardware.accelerator_profile(name, efficiency=efficiency)


def test_real_costs_of_a_cascade_by_hand():
    # 1e9 MAC/s, 3.6 $/h = 0.001 $/s, 3.6 kW = 0.001 kWh/s: money and kWh equal seconds / 1000.
    profile = HardwareProfile("unit", price_per_hour=3.6, power_w=3600, label="test", macs_per_s=1e9)
    costs = hardware.real_costs(profile, ["s", "l"], [1e6, 1e7], ks=(10,), n_images=1000, alpha=0.1)
    assert costs.build.seconds == pytest.approx(1.0)  # 1,000 x 1e6
    assert costs.first_query.seconds == pytest.approx(0.1)  # 10 x 1e7
    assert costs.lifetime.seconds == pytest.approx(2.0)  # 1 + 0.1 x 1,000 x 1e7 / 1e9
    assert costs.lifetime.money == pytest.approx(0.002) and costs.lifetime.kwh == pytest.approx(0.002)
    assert costs.baselines["l"].seconds == pytest.approx(10.0)


def test_measured_profile_uses_each_encoders_own_rate():
    a = hardware.Measurement("fake:a", "box", images_per_s=100.0, macs_per_image=1000, measured_at="2025-01-02T03:04")
    b = hardware.Measurement("fake:b", "box", images_per_s=10.0, macs_per_image=5000, measured_at="2025-01-02T03:04")
    profile = hardware.measured_profile([a, b], price_per_hour=0.0, power_w=100)
    assert profile.estimate(1e5, "fake:a").seconds == pytest.approx(1.0)  # 1e5 / (100 x 1000)
    assert profile.estimate(1e5, "fake:b").seconds == pytest.approx(2.0)  # 1e5 / (10 x 5000)
    assert "box" in profile.label and "2025-01-02" in profile.label
    with pytest.raises(ConfigError, match="not been measured"):
        profile.rate("fake:c")


def test_measurement_is_cached_by_encoder_and_machine():
    encoder = FakeBiEncoder("timed", seed=1, image_macs=500)
    ticks = iter([10.0, 12.0])  # the timed passes take 2 s by this clock
    first = hardware.measure_throughput(encoder, batch_size=4, repeats=3, clock=lambda: next(ticks))
    assert first.images_per_s == pytest.approx(4 * 3 / 2.0) and first.macs_per_s == pytest.approx(6 * 500)
    assert encoder.images_encoded == 4 * 4  # warm-up + 3 timed passes
    again = hardware.measure_throughput(encoder, batch_size=4, repeats=3, clock=lambda: 1 / 0)
    assert again == first and encoder.images_encoded == 16  # read back, nothing ran
    stored = json.loads((hardware._cache_file()).read_text())
    assert list(stored) == [f"fake:timed|{hardware.machine_name()}"]


def test_whatif_in_real_units_by_hand(engine):
    # Test GMACs: B/16 10, L/14 50, g/14 180 per image. 1 GMAC/s: seconds = GMACs.
    model = engine.cost_model.whatif("CLIP, ViT", ["B/16", "g/14"], "paper", 1000, 0.1, 100, (50,))
    profile = HardwareProfile("unit", price_per_hour=36.0, power_w=360, label="by hand", macs_per_s=1e9)
    costs = whatif.real_units(model, profile)
    assert costs.build.seconds == pytest.approx(10 * 1000)
    assert costs.first_query.seconds == pytest.approx(50 * 180)  # k_1 x C_g
    assert costs.lifetime.seconds == pytest.approx(10 * 1000 + 0.1 * 1000 * 180)
    assert costs.lifetime.money == pytest.approx(28_000 / 3600 * 36.0)
    assert costs.baselines["L/14"].kwh == pytest.approx(50_000 * 360 / 3.6e6)
    text = real_units_summary(costs, model.break_even)
    assert "by hand" in text and "2.5 h" in text  # the first query: 9,000 s
