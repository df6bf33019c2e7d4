"""How level 1 ranks the gallery, as both faces write it: ``exact``, ``exact:float16``, ``auto[@memory_gb=GB]``
or ``faiss:FACTORY[@PARAMS][+rerank=R]`` (``cascade.index`` builds, saves and measures what it names)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cascade.errors import ConfigError

EXACT = "exact"
AUTO = "auto"  # the cheapest index passing the recall gate, measured (cascade.index_auto)
DTYPES = ("float32", "float16")
# Search parameters when the spec names none: FAISS's own defaults (efSearch 16, nprobe 1) lose
# most of a top-50 on clustered embeddings, so the recall gate would refuse them anyway.
DEFAULT_PARAMS = {"HNSW": "efSearch=128", "IVF": "nprobe=32"}
_FACTORY = re.compile(r"^[A-Za-z0-9_,.+/=-]+$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[0-9.]+$")


@dataclass(frozen=True)
class IndexSpec:
    """How level 1 ranks the gallery.

    Attributes:
        kind: ``"exact"``, ``"faiss"`` or ``"auto"``.
        dtype: storage of the exact matrix, ``"float32"`` or ``"float16"`` (exact only).
        factory: the ``faiss.index_factory`` string (faiss only).
        params: FAISS search parameters, ``"name=value,..."`` (``faiss.ParameterSpace`` syntax); auto's budget.
        shortlist: 0, or the multiple of k the index returns for an exact re-rank from the matrix (faiss only).
    """

    kind: str = EXACT
    dtype: str = "float32"
    factory: str = ""
    params: str = ""
    shortlist: int = 0

    @property
    def name(self) -> str:
        """The canonical text form, e.g. ``exact``, ``exact:float16``, ``faiss:HNSW32@efSearch=128``."""
        if self.kind == EXACT:
            return EXACT if self.dtype == "float32" else f"{EXACT}:{self.dtype}"
        head = f"faiss:{self.factory}" if self.kind == "faiss" else self.kind
        return (
            head + (f"@{self.params}" if self.params else "") + (f"+rerank={self.shortlist}" if self.shortlist else "")
        )

    @property
    def approximate(self) -> bool:
        """Not exact: a FAISS index, or ``auto`` (which may pick one)."""
        return self.kind != EXACT


def parse_index(text: str) -> IndexSpec:
    """``exact``, ``exact:float16``, ``faiss:FACTORY[@PARAMS][+rerank=R]`` or ``auto[@memory_gb=GB]`` -> IndexSpec
    (syntax only).

    Raises:
        ConfigError: one line naming what is wrong.
    """
    text = (text or "").strip()
    head, _, budget = text.partition("@")
    if head == AUTO:
        if not re.fullmatch(r"(memory_gb=[0-9.]+)?", budget):
            raise ConfigError(f"auto takes a memory budget only, e.g. auto@memory_gb=16; got {text!r}")
        return IndexSpec(kind=AUTO, params=budget)
    kind, _, rest = text.partition(":")
    if kind == EXACT:
        dtype = rest or "float32"
        if dtype not in DTYPES:
            raise ConfigError(f"exact storage must be one of {', '.join(DTYPES)}, got {text!r}")
        return IndexSpec(dtype=dtype)
    if kind != "faiss":
        raise ConfigError(
            f"unknown index {text!r}; use exact, exact:float16, auto or faiss:FACTORY (e.g. faiss:HNSW32)"
        )
    rest, marked, shortlist = rest.partition("+rerank=")
    if marked and not (shortlist.isdigit() and int(shortlist) >= 1):
        raise ConfigError(f"+rerank= takes a whole number of k's (e.g. +rerank=40), got {text!r}")
    factory, _, params = rest.partition("@")
    if not factory or not _FACTORY.match(factory):
        raise ConfigError(
            f"malformed FAISS factory string {factory!r} in {text!r} (e.g. faiss:HNSW32, faiss:IVF4096,PQ64)"
        )
    if params and not all(_PARAM.match(p) for p in params.split(",")):
        raise ConfigError(f"malformed FAISS search parameters {params!r} in {text!r} (e.g. efSearch=128,nprobe=32)")
    if not params:
        params = ",".join(value for key, value in DEFAULT_PARAMS.items() if key in factory)
    return IndexSpec(kind="faiss", factory=factory, params=params, shortlist=int(shortlist or 0))
