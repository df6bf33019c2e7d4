"""Hardware profiles: MACs turned into seconds, money and energy, honestly labelled.

Two kinds of profile:

- a named accelerator (``analysis/data/hardware_profiles.json``): the datasheet's dense
  Tensor Core TFLOPS times an efficiency the user sets (default stated in the file), a
  price per hour and a power draw. Every figure it gives is *estimated from MACs*.
- this machine, measured: each encoder's images per second from a short timed forward
  pass (``measure_throughput``), cached in the cache dir by encoder id and machine, and
  shown with the machine and the date it was measured.

All unit conversions (MAC = 2 FLOPs, TFLOPS, hours, kWh) go through ``cascade.units``.
"""

from __future__ import annotations

import functools
import json
import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cascade import units
from cascade.encoders.base import ImageTower
from cascade.errors import ConfigError
from cascade.paths import cache_dir

PROFILES_FILE = Path(__file__).resolve().parent / "data" / "hardware_profiles.json"
MEASURED = "this machine (measured)"
THROUGHPUT_CACHE = "throughput.json"


@dataclass(frozen=True)
class Accelerator:
    """One row of the profile table (a vendor datasheet's figures)."""

    name: str
    precision: str
    dense_tflops: float
    power_w: float
    price_per_hour: float
    source: str


@functools.cache
def _table() -> dict:
    return json.loads(PROFILES_FILE.read_text(encoding="utf-8"))


def accelerators() -> dict[str, Accelerator]:
    """Name -> accelerator, in the file's order."""
    return {row["name"]: Accelerator(**row) for row in _table()["profiles"]}


def default_efficiency() -> float:
    return float(_table()["default_efficiency"])


def efficiency_note() -> str:
    return str(_table()["default_efficiency_note"])


@dataclass(frozen=True)
class Measurement:
    """One encoder's measured image throughput on one machine."""

    encoder_id: str
    machine: str
    images_per_s: float
    macs_per_image: int
    measured_at: str  # ISO date-time, UTC

    @property
    def macs_per_s(self) -> float:
        return self.images_per_s * self.macs_per_image


@dataclass(frozen=True)
class HardwareProfile:
    """How fast MACs run, what an hour costs and what power it draws.

    Attributes:
        macs_per_s: throughput for any encoder (accelerator profiles); None for a measured profile.
        per_encoder: encoder id -> measured MACs per second (measured profiles).
        price_per_hour: currency units (USD in the table) per hour of the machine.
        label: how the figures were obtained, shown beside every one of them.
    """

    name: str
    price_per_hour: float
    power_w: float
    label: str
    macs_per_s: float | None = None
    per_encoder: Mapping[str, float] = field(default_factory=dict)
    efficiency: float | None = None

    def __post_init__(self) -> None:
        rates = [self.macs_per_s] if self.macs_per_s is not None else list(self.per_encoder.values())
        if not rates or any(not math.isfinite(r) or r <= 0 for r in rates):
            raise ConfigError(f"profile {self.name!r} needs positive throughputs")
        if self.price_per_hour < 0 or self.power_w < 0:
            raise ConfigError("the price per hour and the power draw must not be negative")

    def rate(self, encoder_id: str) -> float:
        """MACs per second of ``encoder_id`` on this hardware."""
        if encoder_id in self.per_encoder:
            return self.per_encoder[encoder_id]
        if self.macs_per_s is None:
            raise ConfigError(f"{encoder_id} has not been measured on this machine")
        return self.macs_per_s

    def estimate(self, macs: float, encoder_id: str = "") -> Estimate:
        """Time, money and energy of running ``macs`` MACs of ``encoder_id``."""
        seconds = macs / self.rate(encoder_id)
        return Estimate(seconds, units.hours(seconds) * self.price_per_hour, units.kwh(seconds, self.power_w))


@dataclass(frozen=True)
class Estimate:
    """Seconds, money (the profile's currency) and kWh of some work; they add up."""

    seconds: float
    money: float
    kwh: float

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(self.seconds + other.seconds, self.money + other.money, self.kwh + other.kwh)


ZERO = Estimate(0.0, 0.0, 0.0)


def accelerator_profile(
    name: str, efficiency: float | None = None, price_per_hour: float | None = None, power_w: float | None = None
) -> HardwareProfile:
    """A named accelerator at ``efficiency`` of its dense peak (default: the table's), price and power overridable."""
    table = accelerators()
    if name not in table:
        raise ConfigError(f"unknown hardware profile {name!r}; profiles: {', '.join(table)}")
    acc = table[name]
    efficiency = default_efficiency() if efficiency is None else float(efficiency)
    if not 0 < efficiency <= 1:
        raise ConfigError(f"the efficiency must lie in (0, 1], got {efficiency}")
    label = (
        f"estimated from MACs at {efficiency:.0%} efficiency of the {acc.name}'s "
        f"{acc.dense_tflops:g} dense {acc.precision} TFLOPS"
    )
    return HardwareProfile(
        name=acc.name,
        price_per_hour=acc.price_per_hour if price_per_hour is None else float(price_per_hour),
        power_w=acc.power_w if power_w is None else float(power_w),
        label=label,
        macs_per_s=units.macs_per_s_from_tflops(acc.dense_tflops) * efficiency,
        efficiency=efficiency,
    )


def measured_profile(measurements: Sequence[Measurement], price_per_hour: float, power_w: float) -> HardwareProfile:
    """This machine's profile from measured encoders (see ``measure_throughput``)."""
    if not measurements:
        raise ConfigError("no encoder has been measured on this machine yet")
    machines = sorted({m.machine for m in measurements})
    dates = sorted({m.measured_at[:10] for m in measurements})
    label = f"measured on {', '.join(machines)} ({', '.join(dates)}), timed forward passes"
    return HardwareProfile(
        name=MEASURED,
        price_per_hour=price_per_hour,
        power_w=power_w,
        label=label,
        per_encoder={m.encoder_id: m.macs_per_s for m in measurements},
    )


# ---------------------------------------------------------------- measuring this machine


def machine_name() -> str:
    """``host (x86_64, cpu)``: what a measurement is keyed by besides the encoder."""
    import torch  # lazy: the What-if tab's named profiles need no torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{platform.node() or 'unknown'} ({platform.machine()}, {device})"


def _cache_file() -> Path:
    return cache_dir() / THROUGHPUT_CACHE


def cached_measurements() -> dict[str, Measurement]:
    """Every cached measurement, keyed ``encoder_id|machine``; an unreadable cache counts as empty."""
    try:
        rows = json.loads(_cache_file().read_text(encoding="utf-8"))
        return {key: Measurement(**row) for key, row in rows.items()}
    except (OSError, ValueError, TypeError):
        return {}


def measure_throughput(
    encoder: ImageTower,
    batch_size: int = 8,
    repeats: int = 3,
    refresh: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Images per second of ``encoder`` on this machine: one warm-up pass, then ``repeats`` timed ones.

    Cached in ``cache_dir()/throughput.json`` by encoder id and machine: measured once, then read back
    (``refresh`` measures again). Random pixels of the encoder's input size stand in for images.
    """
    key = f"{encoder.id}|{machine_name()}"
    cache = cached_measurements()
    if key in cache and not refresh:
        return cache[key]
    import torch

    size = int(getattr(encoder, "image_size", 224))
    pixels = torch.from_numpy(np.random.default_rng(0).random((batch_size, 3, size, size), dtype=np.float32))
    encoder.encode_pixels(pixels)  # warm-up: lazy init, kernel selection
    started = clock()
    for _ in range(repeats):
        encoder.encode_pixels(pixels)
    elapsed = max(clock() - started, 1e-9)
    measurement = Measurement(
        encoder.id,
        machine_name(),
        batch_size * repeats / elapsed,
        int(encoder.image_macs),
        datetime.now(UTC).isoformat(timespec="seconds"),
    )
    cache[key] = measurement
    _cache_file().parent.mkdir(parents=True, exist_ok=True)
    tmp = _cache_file().with_suffix(".tmp")
    tmp.write_text(json.dumps({k: vars(m) for k, m in cache.items()}, indent=1), encoding="utf-8")
    tmp.replace(_cache_file())  # atomic: a reader never sees half a file
    return measurement


# ---------------------------------------------------------------- a cascade in real units


@dataclass(frozen=True)
class RealCosts:
    """A cascade's costs on one profile (all ``Estimate``).

    Attributes:
        build: level 1 over the whole gallery, ``N x C_1``.
        first_query: what the first query adds with every cache empty, ``k_1 C_2 + ... + k_{L-1} C_L``
            (image side only; the paper's early-latency problem).
        lifetime: ``N C_1 + alpha N (C_2 + ... + C_L)``, each level at its own rate.
        baselines: encoder id -> that encoder alone over the whole gallery (``N x C_i``).
    """

    build: Estimate
    first_query: Estimate
    lifetime: Estimate
    baselines: dict[str, Estimate]
    label: str


def real_costs(
    profile: HardwareProfile,
    encoder_ids: Sequence[str],
    macs_per_image: Sequence[float],
    ks: Sequence[int],
    n_images: int,
    alpha: float,
) -> RealCosts:
    """The cascade ``encoder_ids`` (cheapest first, ``macs_per_image`` each) on ``profile``; ``ks`` as handed on."""
    if len(encoder_ids) != len(macs_per_image) or not encoder_ids:
        raise ConfigError("one MACs-per-image figure per encoder is needed")
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha}")
    ids, costs = list(encoder_ids), list(macs_per_image)
    build = profile.estimate(n_images * costs[0], ids[0])
    first = ZERO
    for k, encoder_id, c in zip(ks, ids[1:], costs[1:]):
        first = first + profile.estimate(k * c, encoder_id)
    lifetime = build
    for encoder_id, c in zip(ids[1:], costs[1:]):
        lifetime = lifetime + profile.estimate(alpha * n_images * c, encoder_id)
    baselines = {encoder_id: profile.estimate(n_images * c, encoder_id) for encoder_id, c in zip(ids, costs)}
    return RealCosts(build, first, lifetime, baselines, profile.label)
