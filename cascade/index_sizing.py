"""``auto``'s candidate list, sized from N as autofaiss sizes clip-retrieval's indexes, and their memory.

autofaiss (which clip-retrieval uses) pins numpy < 2 and pandas < 3, which ours exclude, so its
sizing rules are restated here rather than imported:

- IVF: about 4 sqrt(N) to 16 sqrt(N) inverted lists; we take the power of two nearest 4 sqrt(N)
  (training is cheaper, each list longer), with at least 39 training points per list (below
  that FAISS warns and k-means centres are noise) and at least 16 lists.
- nprobe: a few percent of the lists. Text queries sit across the modality gap from the image
  cone the lists were trained on, so their nearest list is less often their target's: two
  settings, 1/32 and 1/8 of the lists, one build.
- PQ: 4-bit fast-scan codes (``PQ{m}x4fs``, m = d/4: d/8 bytes a row, 1/32 of float32; 8-bit PQ
  trains for half an hour on our sample), its shortlist of 10 k re-ranked exactly from the
  matrix level 1 already holds (not FAISS's ``RFlat``, which keeps its own float32 copy).
- Below 10,000 rows only exact float16 is tried (IVF lists need 39 training rows each, and exact
  float32 takes well under a millisecond there).
- HNSW32 at efSearch 2k and 4k (one build); not above 2M rows, where its build takes most of
  an hour on two cores (4M: about an hour, ``bench.index``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass

from cascade.errors import ConfigError
from cascade.index import IndexSpec, parse_index

HNSW_MAX_ROWS = 2_000_000
FAISS_MIN_ROWS = 10_000  # below this a matmul over the gallery takes well under a millisecond: exact only
SHORTLIST = 10  # an IVF-PQ candidate's shortlist, in multiples of k, re-ranked exactly
_IVF = re.compile(r"^IVF(\d+),(Flat|PQ(\d+)(x4fs)?|SQfp16|SQ8)$")
_HNSW = re.compile(r"^HNSW(\d+)(,Flat)?$")


@dataclass(frozen=True)
class Candidate:
    """One setting ``auto`` may pick.

    Attributes:
        spec: ``exact:float16`` or a FAISS factory with its search parameters and any shortlist (the multiple of
            k the index returns for an exact re-rank from the held matrix).
    """

    spec: IndexSpec

    @classmethod
    def of(cls, text: str, shortlist: int = 0) -> Candidate:
        return cls(dataclasses.replace(parse_index(text), shortlist=shortlist))

    @property
    def shortlist(self) -> int:
        return self.spec.shortlist

    @property
    def name(self) -> str:
        """``exact:float16``, ``faiss:HNSW32@efSearch=128``, ``faiss:IVF512,PQ128x4fs@nprobe=16+rerank=10``."""
        return self.spec.name


def ivf_lists(n: int) -> int:
    """The power of two nearest 4 sqrt(n), between 16 and n / 39."""
    wanted = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(n))))
    return max(16, min(wanted, 2 ** int(math.log2(max(16, n // 39)))))


def default_candidates(n: int, d: int, k: int) -> tuple[Candidate, ...]:
    """The short list ``auto`` measures at ``n`` rows of dimension ``d`` for k_1 = ``k``."""
    found = [Candidate.of("exact:float16")]
    if n < FAISS_MIN_ROWS:
        return tuple(found)
    lists = ivf_lists(n)
    probes = sorted({max(1, lists // 32), max(1, lists // 8)})
    found += [Candidate.of(f"faiss:IVF{lists},Flat@nprobe={p}") for p in probes]
    if d % 4 == 0:
        found += [Candidate.of(f"faiss:IVF{lists},PQ{d // 4}x4fs@nprobe={p}", SHORTLIST) for p in probes]
    if n <= HNSW_MAX_ROWS:
        found += [Candidate.of(f"faiss:HNSW32@efSearch={max(64, e * k)}") for e in (2, 4)]
    return tuple(found)


def estimate_bytes(candidate: Candidate, n: int, d: int, held_bytes: int) -> int:
    """What the candidate keeps in memory to answer queries, from its factory (before building it).

    Args:
        held_bytes: the level-1 matrix's bytes, counted for a candidate that re-ranks from it.

    Raises:
        ConfigError: a factory this sizing does not know.
    """
    spec = candidate.spec
    if not spec.approximate:
        return n * d * (2 if spec.dtype == "float16" else 4)
    ivf, hnsw = _IVF.match(spec.factory), _HNSW.match(spec.factory)
    if hnsw is not None:  # float32 rows, 2M links of 4 bytes on level 0, about 10% more above it
        size = n * (4 * d + int(2 * int(hnsw.group(1)) * 4 * 1.1))
    elif ivf is not None:
        lists, codes = int(ivf.group(1)), ivf.group(2)
        per_row = {"Flat": 4 * d, "SQfp16": 2 * d, "SQ8": d}.get(codes)
        if per_row is None:  # PQ: m codes of 8 bits, or 4 with fast-scan
            per_row = int(ivf.group(3)) // (2 if ivf.group(4) else 1)
        size = n * (per_row + 8) + lists * d * 4  # + an 8-byte id per row, + the coarse centres
    else:
        raise ConfigError(f"auto cannot size {spec.factory!r}: use HNSW{{M}} or IVF{{lists}},Flat/PQ/SQ factories")
    return size + (held_bytes if candidate.shortlist else 0)


def memory_budget(params: str) -> int:
    """``auto@memory_gb=16`` -> bytes; when the spec names no budget, half this machine's physical memory
    (a candidate over it is not built: at 10M rows IVF-Flat alone holds 20 GB of float32 codes).

    Raises:
        ConfigError: an ``auto`` parameter other than ``memory_gb``.
    """
    budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    for part in filter(None, params.split(",")):
        name, _, value = part.partition("=")
        if name != "memory_gb":
            raise ConfigError(f"auto takes memory_gb=GB (e.g. auto@memory_gb=16), got {part!r}")
        budget = int(float(value) * 2**30)
    return budget
