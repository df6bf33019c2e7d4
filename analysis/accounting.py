"""What a cascade's image encoders cost over a lifetime, from the ids each query handed on: the one place it is counted.

A fresh system pays N x C_1 at build (level 1 embeds the whole gallery); level i >= 2 then pays
C_i for each image the first time any query hands it that image (the cache keeps it for every
later query). So the lifetime cost, alpha and the per-query curve are functions of the handed ids
alone, whatever a shared feature cache already held: an evaluation, a replay, a CrispSearch
comparison and the Cost tab's log are all counted here. ``analysis.store`` reads the same
figures back in SQL (``lifetime_cost``, ``handed_share``), and a test holds the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cascade.types import SearchResult


def handed_ids(result: SearchResult) -> list[tuple[str, ...]]:
    """The ids each level handed to the next, level 1 first (``[]`` for one level)."""
    return [tuple(trace.ids) for trace in result.levels[:-1]]


@dataclass
class CostAccumulator:
    """Counts a fresh system's image cost as queries hand images from level to level.

    Args:
        macs_per_image: each level's image MACs per image, level 1 first (a cross-encoder's 0:
            it embeds no image alone).
        n_images: the gallery's size N.

    Attributes:
        curve: cumulative image MACs after 0, 1, 2, ... queries (index 0: the build, N x C_1).
        per_query: each query's new image MACs per level, level 1's always 0 (``(queries, levels)``).
    """

    macs_per_image: Sequence[int]
    n_images: int

    def __post_init__(self) -> None:
        self.macs_per_image = tuple(int(m) for m in self.macs_per_image)
        self._seen: list[set[str]] = [set() for _ in self.macs_per_image[1:]]  # images level i >= 2 has had
        self.curve: list[int] = [self.n_images * self.macs_per_image[0]]
        self.per_query: list[tuple[int, ...]] = []

    def add(self, handed: Sequence[Sequence[str]]) -> int:
        """One query's hand-offs (``handed[i]``: the ids level i+1 handed to level i+2); returns its new MACs."""
        new_macs = [0]
        for seen, ids, macs in zip(self._seen, handed, self.macs_per_image[1:]):
            new = set(ids) - seen
            seen |= new
            new_macs.append(len(new) * macs)
        new_macs += [0] * (len(self.macs_per_image) - len(new_macs))  # levels this query did not reach
        self.per_query.append(tuple(new_macs))
        self.curve.append(self.curve[-1] + sum(new_macs))
        return sum(new_macs)

    def add_result(self, result: SearchResult) -> int:
        return self.add(handed_ids(result))

    def extend(self, many: Iterable[Sequence[Sequence[str]]]) -> CostAccumulator:
        for handed in many:
            self.add(handed)
        return self

    @property
    def queries(self) -> int:
        return len(self.per_query)

    @property
    def image_macs(self) -> int:
        """Build + every image each level >= 2 needed, once."""
        return self.curve[-1]

    @property
    def alpha(self) -> float:
        """Share of the gallery ever handed above level 1 (0 for one level)."""
        return len(self._seen[0]) / self.n_images if self._seen and self.n_images else 0.0

    def handed_counts(self) -> tuple[int, ...]:
        """How many distinct images each level >= 2 has been handed."""
        return tuple(len(seen) for seen in self._seen)
