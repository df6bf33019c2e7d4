"""MAC units: the one place where MACs and GMACs convert into each other.

Everything in the library counts plain MACs (``int``); only tables and figures
that speak in GMACs convert, through these two functions.
"""

from __future__ import annotations

GIGA = 1e9  # 1 GMAC = 10^9 multiply-accumulates


def gmacs(macs: float) -> float:
    """MACs -> GMACs."""
    return macs / GIGA


def macs_from_gmacs(gmacs_value: float) -> float:
    """GMACs -> MACs."""
    return gmacs_value * GIGA


# Time, money and energy: the hardware profiles (analysis.hardware) convert through these and nothing else.
FLOPS_PER_MAC = 2  # one multiply-accumulate = one multiply + one add
TERA = 1e12
SECONDS_PER_HOUR = 3600.0
JOULES_PER_KWH = 3.6e6


def flops_from_macs(macs: float) -> float:
    """MACs -> FLOPs (x 2)."""
    return macs * FLOPS_PER_MAC


def macs_per_s_from_tflops(tflops: float) -> float:
    """A throughput in TFLOP/s (as datasheets print it) -> MACs per second."""
    return tflops * TERA / FLOPS_PER_MAC


def hours(seconds: float) -> float:
    """Seconds -> hours."""
    return seconds / SECONDS_PER_HOUR


def kwh(seconds: float, power_w: float) -> float:
    """Energy in kWh of drawing ``power_w`` watts for ``seconds``."""
    return seconds * power_w / JOULES_PER_KWH
