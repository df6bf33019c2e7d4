"""Level 1's build on Ray Data: the gallery embedded by a pool of encoder actors, one machine or a cluster.

    (image id, path) --from_items--> blocks --map_batches(EmbedBatch, ActorPoolStrategy)--> (image id, embedding)
          --driver--> Parquet shards (image id, embedding) --> the caller's feature cache

Each actor creates the encoder once (``make_encoder``: the same contract and the
same factory as the local build) and reads, decodes, preprocesses and embeds
the files of the blocks it is handed. The driver writes every finished block as
one Parquet shard (atomically: written aside, then renamed), so a killed build
resumes from the shards already on disk; a shard cut short by the kill is
unreadable and redone.

Ray is imported only inside ``ray_embed``: the app and the local build never need it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.corpus import Corpus, load_image
from cascade.encoders.base import BiEncoder
from cascade.errors import CascadeError, CorpusError
from cascade.index import EngineMissing

ROWS_PER_SHARD = 256
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class RayUnavailable(CascadeError):
    """The Ray cluster asked for does not answer."""


@dataclass(frozen=True)
class Shard:
    """One Parquet shard's rows: ``embeddings`` ``(len(ids), d)`` float32; ``resumed``: read back, not computed now."""

    ids: tuple[str, ...]
    embeddings: np.ndarray
    resumed: bool

    def features(self) -> dict[str, np.ndarray]:
        return dict(zip(self.ids, self.embeddings))


class EmbedBatch:
    """Ray Data's callable class: one encoder per actor, created once, then one call per block."""

    def __init__(self, make_encoder: Callable[[], BiEncoder], batch_size: int) -> None:
        import torch

        torch.set_num_threads(1)  # one actor per core: intra-op threads would oversubscribe it
        self.encoder = make_encoder()
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"image_id": (n,), "path": (n,)}`` -> ``{"image_id": (n,), "embedding": (n, d) float32}``."""
        import torch

        # The file decoded as the local build decodes it (cascade.corpus.load_image): the same pixels.
        pixels = [self.encoder.preprocess(load_image(Path(path))) for path in batch["path"]]
        parts = [
            self.encoder.encode_pixels(torch.stack(pixels[start : start + self.batch_size]))
            for start in range(0, len(pixels), self.batch_size)
        ]
        return {"image_id": batch["image_id"], "embedding": np.concatenate(parts).astype(np.float32, copy=False)}


def ray_embed(
    make_encoder: Callable[[], BiEncoder],
    corpus: Corpus,
    image_ids: Sequence[str],
    shard_dir: str | os.PathLike,
    address: str | None = None,
    workers: int = 2,
    batch_size: int = 32,
    rows_per_shard: int = ROWS_PER_SHARD,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Shard]:
    """Embed ``image_ids`` of ``corpus`` on Ray Data; yield each shard, those already on disk first.

    Args:
        make_encoder: creates the level-1 encoder in each actor (picklable, e.g. ``partial(create_encoder, name)``).
        shard_dir: this encoder's shard folder (shards of another encoder must not share it).
        address: a Ray cluster (``HOST:PORT`` or ``ray://HOST:PORT``); None starts a local Ray on ``workers`` cores.
        workers: encoder actors (one CPU each).
        progress: called with (images done, images asked for).

    Raises:
        EngineMissing: Ray is not installed. RayUnavailable: ``address`` does not answer.
    """
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    wanted = set(image_ids)
    done = 0
    for shard in _read_shards(shard_dir, wanted):
        done += len(shard.ids)
        wanted.difference_update(shard.ids)
        if progress is not None:
            progress(done, len(image_ids))
        yield shard
    todo = [image_id for image_id in image_ids if image_id in wanted]
    if not todo:
        return
    missing = [image_id for image_id in todo if image_id not in corpus.paths]
    if missing:
        raise CorpusError(f"the ray engine reads image files; {len(missing)} image(s) have none, e.g. {missing[0]}")
    rows_per_shard = max(1, min(rows_per_shard, math.ceil(len(todo) / workers)))  # every actor gets a block
    ray, started = _start_ray(address, workers)
    try:
        for shard in _run_pipeline(ray, make_encoder, corpus, todo, shard_dir, workers, batch_size, rows_per_shard):
            done += len(shard.ids)
            if progress is not None:
                progress(done, len(image_ids))
            yield shard
    finally:
        if started:  # a Ray the caller started (tests, a notebook) is left running
            ray.shutdown()


def _run_pipeline(ray, make_encoder, corpus, todo, shard_dir, workers, batch_size, rows_per_shard) -> Iterator[Shard]:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False  # the caller shows progress
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # The actors read their blocks' files themselves. A Ray Data read task per block would cost a Ray
    # worker process per concurrent task (num_cpus=0 tasks are not capped by the cores), each importing
    # Ray Data, pyarrow and pandas to read a few files, and the files' bytes a trip through the object store.
    items = [{"image_id": image_id, "path": str(Path(corpus.paths[image_id]).resolve())} for image_id in todo]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(todo) / rows_per_shard)))
    embedded = dataset.map_batches(
        EmbedBatch,
        fn_constructor_args=(make_encoder, batch_size),
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=rows_per_shard,
        batch_format="numpy",
        num_cpus=1,
    )
    for batch in embedded.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
        ids = tuple(str(image_id) for image_id in batch["image_id"])
        shard = Shard(ids, np.asarray(batch["embedding"], dtype=np.float32), resumed=False)
        _write_shard(shard_dir, shard)
        yield shard


def _start_ray(address: str | None, workers: int) -> tuple[object, bool]:
    """(ray, started here): a fresh local Ray (no dashboard, no telemetry), or the cluster at ``address``."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a build
    try:
        import ray
    except ImportError:
        raise EngineMissing('Ray is not installed: pip install "ray[data]==2.60.0" (or use --engine local)') from None
    if address:  # even with a Ray running here: an address nobody answers at is a mistake, never ignored
        _check_answers(address)
    if ray.is_initialized():
        return ray, False
    # Local workers import the project from this checkout, whatever the interpreter's path says.
    paths = os.pathsep.join([str(PROJECT_ROOT), *[p for p in sys.path if p and os.path.isdir(p)]])
    options = {"runtime_env": {"env_vars": {"PYTHONPATH": paths}}} if not address else {}
    try:
        ray.init(
            address=address,
            num_cpus=None if address else workers,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            **options,
        )
    except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError... for a bad cluster
        raise RayUnavailable(f"cannot start Ray at {address or 'this machine'}: {err}".splitlines()[0]) from None
    return ray, True


def _check_answers(address: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``address`` (``ray.init`` would retry for long)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"a Ray address is HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise RayUnavailable(f"no Ray cluster answers at {address} ({err.strerror or err})") from None


def _shard_name(ids: Sequence[str]) -> str:
    return "shard-" + hashlib.blake2b("\n".join(ids).encode(), digest_size=8).hexdigest() + ".parquet"


def _write_shard(shard_dir: Path, shard: Shard) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = shard.embeddings.shape[1]
    flat = pa.array(np.ascontiguousarray(shard.embeddings).reshape(-1), type=pa.float32())
    table = pa.table({"image_id": list(shard.ids), "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})
    path = shard_dir / _shard_name(shard.ids)
    temporary = path.with_name(path.name + ".tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)


def _read_shards(shard_dir: Path, wanted: set[str]) -> Iterator[Shard]:
    """The shards a previous build left, restricted to ``wanted``; unreadable ones are deleted (and redone)."""
    import pyarrow.parquet as pq

    for path in sorted(shard_dir.glob("shard-*.parquet")):
        try:
            table = pq.read_table(path)
            ids = table.column("image_id").to_pylist()
            embedding = table.column("embedding").combine_chunks()
            rows = embedding.flatten().to_numpy().reshape(len(ids), embedding.type.list_size)
        except Exception:  # pyarrow raises several types for a truncated or foreign file
            path.unlink(missing_ok=True)
            continue
        keep = [i for i, image_id in enumerate(ids) if image_id in wanted]
        if keep:
            yield Shard(tuple(ids[i] for i in keep), rows[keep].astype(np.float32, copy=False), resumed=True)
