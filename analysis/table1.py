"""Reproduce the cost columns of the paper's Table 1 from MAC counts.

    cascade table1 [--json] [--macs paper|full] [--alpha 0.1] [--k1 50 --k2 14]

``--macs paper`` (the default) counts MACs with THOP as the paper did and matches every
printed figure; ``--macs full`` also counts the attention THOP misses (see ``cascade.cost``),
which makes ViTs and BLIP dearer and changes their ratios.

JSON schema (``--json``)::

    {"macs_mode": "paper", "alpha": 0.1,
     "encoders": [{"name", "family", "resolution", "image_gmacs"}],
     "singles":  [{"name", "family", "reference", "lifetime_reduction"}],
     "cascades": [{"levels": [names], "family", "ks", "lifetime_reduction", "early_latency_reduction"}]}

- ``singles``: each encoder alone against its family's largest (the paper's uncascaded rows,
  e.g. ViT-B-16 15.8x, and the largest itself 1x). Kept out of ``cascades`` because their
  reduction is against another encoder, not against their own last level.
- ``ks``: the paper's notation, the candidates each level hands on: ``[k_1]`` for 2 levels,
  ``[k_1, k_2]`` for 3. The number of final results costs no image encoding and is left out.
- ``early_latency_reduction``: Eq. 1 against ``[first, last]`` with the same ``k_1``; null
  below 3 levels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from analysis import cost_model
from analysis.cost_model import CascadeCosts
from cascade.errors import ConfigError


@dataclass(frozen=True)
class EncoderSpec:
    """One image encoder of Table 1.

    Attributes:
        name: open_clip architecture name, or ``blip-base`` / ``blip-large``.
        label: the paper's short name within its family (``B/16``, ``XXL``).
        encoder: its encoder registry name (``openclip:ViT-B-16``, ``blip:base``): its backend counts the MACs.
        resolution: input size in pixels, the model's native one.
    """

    name: str
    label: str
    encoder: str
    resolution: int


@dataclass(frozen=True)
class Family:
    """A block of Table 1: encoders cheapest first (the last is the reference) and cascades by name."""

    title: str
    encoders: tuple[EncoderSpec, ...]
    cascades: tuple[tuple[str, ...], ...]


def _openclip(name: str, label: str, resolution: int) -> EncoderSpec:
    return EncoderSpec(name=name, label=label, encoder=f"openclip:{name}", resolution=resolution)


def _blip(variant: str, label: str) -> EncoderSpec:
    return EncoderSpec(name=f"blip-{variant}", label=label, encoder=f"blip:{variant}", resolution=384)


FAMILIES: tuple[Family, ...] = (
    Family(
        title="CLIP, ViT",
        encoders=(
            _openclip("ViT-B-16", "B/16", 224),
            _openclip("ViT-L-14", "L/14", 224),
            _openclip("ViT-g-14", "g/14", 224),
        ),
        cascades=(("ViT-L-14", "ViT-g-14"), ("ViT-B-16", "ViT-g-14"), ("ViT-B-16", "ViT-L-14", "ViT-g-14")),
    ),
    Family(
        title="CLIP, ConvNeXt",
        encoders=(
            _openclip("convnext_base_w", "B", 256),
            _openclip("convnext_large_d", "L", 256),
            _openclip("convnext_xxlarge", "XXL", 256),
        ),
        cascades=(
            ("convnext_large_d", "convnext_xxlarge"),
            ("convnext_base_w", "convnext_xxlarge"),
            ("convnext_base_w", "convnext_large_d", "convnext_xxlarge"),
        ),
    ),
    Family(
        title="BLIP",
        encoders=(_blip("base", "B"), _blip("large", "L")),
        cascades=(("blip-base", "blip-large"),),
    ),
)

FAMILY_KEYS = {"vit": "CLIP, ViT", "convnext": "CLIP, ConvNeXt", "blip": "BLIP"}  # command-line name -> title


def family_of(key: str, families: Sequence[Family] = FAMILIES) -> Family:
    """The family ``vit``, ``convnext`` or ``blip``."""
    title = FAMILY_KEYS.get(key)
    found = [family for family in families if family.title == title]
    if not found:
        raise ConfigError(f"unknown family {key!r}; families: {', '.join(FAMILY_KEYS)}")
    return found[0]


NOTES = {
    "paper": (
        "Note: paper mode counts MACs with THOP as the paper did; THOP misses attention (QK^T, AV, "
        "nn.MultiheadAttention, bare projections), so ViT and BLIP costs are too low: --macs full corrects them."
    ),
    "full": (
        "Note: full mode adds the attention THOP misses, so ViT and BLIP costs rise and their ratios differ from "
        "the paper's (--macs paper); ConvNeXt has no attention and barely moves."
    ),
}


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class EncoderRow:
    name: str
    family: str
    resolution: int
    image_gmacs: float


@dataclass(frozen=True)
class SingleRow:
    name: str
    family: str
    reference: str
    lifetime_reduction: float


@dataclass(frozen=True)
class CascadeRow:
    levels: tuple[str, ...]
    family: str
    ks: tuple[int, ...]
    lifetime_reduction: float
    early_latency_reduction: float | None


@dataclass(frozen=True)
class Table1:
    """Table 1's cost columns; ``to_json_dict`` gives the schema of the module docstring."""

    macs_mode: str
    alpha: float
    encoders: tuple[EncoderRow, ...]
    singles: tuple[SingleRow, ...]
    cascades: tuple[CascadeRow, ...]

    def to_json_dict(self) -> dict:
        return {
            "macs_mode": self.macs_mode,
            "alpha": self.alpha,
            "encoders": [asdict(row) for row in self.encoders],
            "singles": [asdict(row) for row in self.singles],
            "cascades": [{**asdict(row), "levels": list(row.levels), "ks": list(row.ks)} for row in self.cascades],
        }


ImageGmacs = Callable[[EncoderSpec, str], float]


def count_image_gmacs(encoder: EncoderSpec, macs_mode: str) -> float:
    """GMACs per image of ``encoder`` at its resolution, counted by its backend on a meta-device model.

    Raises:
        ConfigError: the model does not run at the resolution Table 1 lists.
    """
    from cascade import units
    from cascade.encoders import count_image_macs  # torch, open_clip and transformers load only when counting

    return units.gmacs(count_image_macs(encoder.encoder, macs_mode, encoder.resolution))


def build_table1(
    macs_mode: str = "paper",
    alpha: float = 0.1,
    k1: int = 50,
    k2: int = 14,
    image_gmacs: ImageGmacs = count_image_gmacs,
    families: Sequence[Family] = FAMILIES,
) -> Table1:
    """Count every encoder once, then apply the cost model to each row.

    Args:
        image_gmacs: ``(encoder, macs_mode) -> GMACs per image``; tests pass fixed numbers.
    """
    # Check the cheap things first: counting MACs takes seconds.
    if macs_mode not in ("paper", "full"):
        raise ConfigError(f"MAC mode must be 'paper' or 'full', got {macs_mode!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha}")
    if not k1 >= k2 >= 1:
        raise ConfigError(f"need k_1 >= k_2 >= 1, got k_1 = {k1}, k_2 = {k2}")
    encoders, singles, cascades = [], [], []
    for family in families:
        gmacs = {e.name: image_gmacs(e, macs_mode) for e in family.encoders}
        encoders += [EncoderRow(e.name, family.title, e.resolution, gmacs[e.name]) for e in family.encoders]
        reference = family.encoders[-1].name
        for e in family.encoders:
            reduction = cost_model.lifetime_reduction(CascadeCosts((gmacs[e.name],)), alpha, gmacs[reference])
            singles.append(SingleRow(e.name, family.title, reference, reduction))
        for levels in family.cascades:
            ks = (k1, k2)[: len(levels) - 1]
            summary = cost_model.summarize(CascadeCosts(tuple(gmacs[n] for n in levels), ks), alpha)
            cascades.append(
                CascadeRow(levels, family.title, ks, summary.lifetime_reduction, summary.early_latency_reduction)
            )
    return Table1(macs_mode, alpha, tuple(encoders), tuple(singles), tuple(cascades))


# ---------------------------------------------------------------- text output


def _labels(families: Sequence[Family]) -> dict[str, str]:
    return {e.name: e.label for family in families for e in family.encoders}


def format_table(table: Table1, k1: int, k2: int, families: Sequence[Family] = FAMILIES) -> str:
    """Aligned plain text: the encoders' GMACs, then Table 1's cost columns per family."""
    labels = _labels(families)
    lines = [
        f"Table 1, cost columns (MACs: {table.macs_mode}, alpha = {table.alpha:g}, k_1 = {k1}, k_2 = {k2})",
        "",
        f"{'Encoder':<18}{'Resolution':>11}{'Image GMACs':>13}",
    ]
    lines += [f"{row.name:<18}{row.resolution:>11}{row.image_gmacs:>13.2f}" for row in table.encoders]
    lines += ["", f"{'Family':<16}{'Cascade':<20}{'Lifetime':>9}{'Early latency':>15}"]
    for family in families:
        rows = [(f"[{labels[s.name]}]", s.lifetime_reduction, None) for s in table.singles if s.family == family.title]
        rows = rows[-1:] + rows[:-1]  # the reference (1x) first, as in the paper
        rows += [
            ("[" + ", ".join(labels[n] for n in c.levels) + "]", c.lifetime_reduction, c.early_latency_reduction)
            for c in table.cascades
            if c.family == family.title
        ]
        for i, (cascade, lifetime, early) in enumerate(rows):
            early_text = "" if early is None else f"{early:.2f}x"
            title = family.title if i == 0 else ""
            lines.append(f"{title:<16}{cascade:<20}{lifetime:>8.1f}x{early_text:>15}".rstrip())
    lines += ["", NOTES[table.macs_mode]]
    return "\n".join(lines)
