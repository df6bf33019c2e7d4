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
