"""The product's memory: one DuckDB file holding the feature cache, the query log and evaluations.

It implements the engine's two protocols, ``FeatureCache`` (``get``/``put``)
and ``QueryLog`` (``record``): ``Cascades.on_store`` (``analysis.cascades``) hands it
to every cascade as its cache, log and evaluation table, so everything persists.
A configuration's own lifetime cost is a function of its log (``lifetime_cost``).

Concurrency: one ``Store`` per process, shared by all threads. Reads use a
per-thread cursor; writes are serialised by a lock and each is one transaction,
so a crash loses at most the query (or batch) in flight. A second process gets
a clear ``StoreError`` (DuckDB allows one writer), or may open read-only while
no writer holds the file.

All of the project's SQL lives here and in ``analysis.store_schema`` (the schema, its history and
its migrations, as data), so a change of schema is read and reviewed in one place.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analysis.imported import imported_folder
from analysis.imported_rows import ImportedEmbeddings
from analysis.store_schema import INSERT_QUERY, SCHEMA, SCHEMA_VERSION, level_row, migration
from cascade.corpus import FileKey
from cascade.errors import CascadeError
from cascade.types import SearchResult

_after_migration_step = None  # tests: called with each statement's index once it ran (the kill -9 test)


def index_folder(db_path: str | Path) -> Path:
    """Where level-1 index files of the database at ``db_path`` live: ``DB.indexes/`` beside it."""
    db = Path(db_path).expanduser()
    return db.with_name(db.name + ".indexes")


class StoreError(CascadeError):
    """The database cannot be used: another schema version, locked, or not a database."""


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation of a cascade configuration on a dataset (recalls in percent)."""

    config_key: str
    dataset: str
    n_images: int
    n_queries: int
    r1: float
    r5: float
    r10: float
    image_macs: int
    alpha: float

    @classmethod
    def of(cls, result, config_key: str, dataset: str) -> EvalRecord:
        """The record of an ``analysis.evaluate.EvalResult`` (duck-typed: the store imports no evaluator)."""
        r1, r5, r10 = (result.recall[k] for k in (1, 5, 10))
        return cls(config_key, dataset, result.n_images, result.n_queries, r1, r5, r10, result.image_macs, result.alpha)


class Store:
    """A DuckDB database file: feature cache + query log + evaluations.

    Args:
        path: the database file (created with its folder if absent).
        read_only: open without taking the write lock (fails if another process writes).

    Raises:
        StoreError: another schema version, a file that is not a DuckDB database,
            or a file locked by another process.
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.read_only = read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_file():
            raise StoreError(f"database not found: {self.path}")
        self._con = _connect(self.path, read_only)
        self.imported = ImportedEmbeddings(imported_folder(self.path))  # level 1 of existing indexes, mapped
        self._write_lock = threading.Lock()
        self._local = threading.local()
        try:
            self._check_or_create_schema()
        except BaseException:
            self._con.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._con.cursor()
        return cursor

    @contextmanager
    def _transaction(self):
        if self.read_only:
            raise StoreError(f"database {self.path} is open read-only")
        with self._write_lock:
            cursor = self._cursor()
            cursor.execute("BEGIN TRANSACTION")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def _check_or_create_schema(self) -> None:
        tables = {row[0] for row in self._con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "meta" in tables:
            row = self._con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            found = int(row[0]) if row else None
            if found in range(1, SCHEMA_VERSION) and not self.read_only:
                self._migrate(found)
            elif found in range(1, SCHEMA_VERSION):
                raise StoreError(
                    f"database {self.path} has schema version {found}; open it once without read-only to "
                    f"migrate it to version {SCHEMA_VERSION}"
                )
            elif found != SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.path} has schema version {found}, this program reads version {SCHEMA_VERSION}; "
                    "use another --db file (the existing one is left untouched)"
                )
            self._next_query_id = self._con.execute("SELECT coalesce(max(query_id), 0) + 1 FROM queries").fetchone()[0]
            return
        if tables:
            raise StoreError(f"{self.path} is a DuckDB database of another program (no cascade schema); use another db")
        if self.read_only:
            raise StoreError(f"database {self.path} is empty and open read-only")
        with self._transaction() as cursor:
            cursor.execute(SCHEMA)
            cursor.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        self._next_query_id = 1

    def _migrate(self, found: int) -> None:
        """Schema ``found`` -> SCHEMA_VERSION in one transaction: killed at any point, the file is as it was."""
        with self._transaction() as cursor:
            for index, statement in enumerate(migration(found)):
                cursor.execute(statement)
                if _after_migration_step is not None:
                    _after_migration_step(index)

    # -- FeatureCache --------------------------------------------------------------------------

    def get(self, encoder_id: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached features of ``image_ids`` for ``encoder_id``, the features table's, else imported; absent ids are
        left out."""
        if not image_ids:
            return {}
        rows = (
            self._cursor()
            .execute(
                "SELECT image_id, shape, data FROM features "
                "WHERE encoder_id = ? AND image_id IN (SELECT unnest(?::VARCHAR[]))",
                [encoder_id, list(image_ids)],
            )
            .fetchall()
        )
        found = {image_id: np.frombuffer(data, dtype=np.float32).reshape(shape) for image_id, shape, data in rows}
        if len(found) < len(image_ids):
            found |= self.imported.get(encoder_id, [image_id for image_id in image_ids if image_id not in found])
        return found

    def put(self, encoder_id: str, features: Mapping[str, np.ndarray]) -> None:
        """Store features in one transaction; rows already present keep their first value."""
        if not features:
            return
        frame = pd.DataFrame(
            {
                "encoder_id": encoder_id,
                "image_id": list(features),
                "shape": [list(np.shape(row)) for row in features.values()],
                "data": [np.ascontiguousarray(row, dtype=np.float32).tobytes() for row in features.values()],
            }
        )
        with self._transaction() as cursor:
            cursor.register("new_features", frame)
            cursor.execute(
                "INSERT INTO features SELECT encoder_id, image_id, shape::INTEGER[], data FROM new_features "
                "ON CONFLICT DO NOTHING"
            )
            cursor.unregister("new_features")

    def lookup(self, keys: Sequence[FileKey]) -> dict[FileKey, str]:
        """Image ids of files seen before with the same (path, size, mtime)."""
        if not keys:
            return {}
        frame = pd.DataFrame(keys, columns=["path", "size", "mtime_ns"])
        cursor = self._cursor()
        cursor.register("wanted_files", frame)
        try:
            rows = cursor.execute(
                "SELECT f.path, f.size, f.mtime_ns, f.image_id FROM file_ids f "
                "JOIN wanted_files w USING (path, size, mtime_ns)"
            ).fetchall()
        finally:
            cursor.unregister("wanted_files")
        return {(path, size, mtime): image_id for path, size, mtime, image_id in rows}

    def remember(self, ids: Mapping[FileKey, str]) -> None:
        if not ids or self.read_only:
            return
        frame = pd.DataFrame(
            [(*key, image_id) for key, image_id in ids.items()], columns=["path", "size", "mtime_ns", "image_id"]
        )
        with self._transaction() as cursor:
            cursor.register("new_files", frame)
            cursor.execute("INSERT INTO file_ids SELECT * FROM new_files ON CONFLICT DO NOTHING")
            cursor.unregister("new_files")

    # -- QueryLog ------------------------------------------------------------------------------

    def record(self, result: SearchResult, corpus_id: str, corpus_size: int) -> None:
        """Log one search: one queries row holding its per-level rows, in one single-row INSERT (atomic)."""
        first = result.levels[0]
        level_rows = json.dumps([level_row(number, trace) for number, trace in enumerate(result.levels, start=1)])
        handed_ids = json.dumps([list(trace.ids) for trace in result.levels[:-1]])
        ts = datetime.now(UTC).replace(tzinfo=None)
        values = [
            ts,
            result.config.key,
            corpus_id,
            corpus_size,
            result.query,
            corpus_size * first.macs_per_image,
            result.image_macs,
            result.text_macs,
            result.latency_ms,
            level_rows,
            handed_ids,
        ]
        if self.read_only:
            raise StoreError(f"database {self.path} is open read-only")
        with self._write_lock:  # the id and the row go together: ids follow the log's order
            self._cursor().execute(INSERT_QUERY, [self._next_query_id, *values])
            self._next_query_id += 1

    def clear_log(self, config_key: str, corpus_id: str | None = None) -> int:
        """Delete the log of one configuration (and corpus); features and evaluations stay. Returns rows deleted."""
        where, params = "config_key = ?", [config_key]
        if corpus_id is not None:
            where, params = where + " AND corpus_id = ?", params + [corpus_id]
        with self._transaction() as cursor:
            return cursor.execute(f"DELETE FROM queries WHERE {where}", params).fetchone()[0]

    # -- reading the log -----------------------------------------------------------------------

    def frame(self, sql: str, params: Sequence | None = None) -> pd.DataFrame:
        """Run a read-only SQL query (parameterised) and return a DataFrame."""
        return self._cursor().execute(sql, list(params or [])).df()

    def cumulative_cost(self, config_key: str, corpus_id: str) -> pd.DataFrame:
        """Columns query_index (0 = build), image_macs, cumulative_image_macs, in query order."""
        return self.frame(
            "SELECT query_index, image_macs, cumulative_image_macs FROM cumulative_cost "
            "WHERE config_key = ? AND corpus_id = ? ORDER BY query_index",
            [config_key, corpus_id],
        )

    def config_totals(self) -> pd.DataFrame:
        """One row per (config_key, corpus_id): queries logged, build_image_macs, cumulative_image_macs."""
        return self.frame(
            "SELECT config_key, corpus_id, count(*) - 1 AS queries, "
            "max(cumulative_image_macs) AS cumulative_image_macs, "
            "max(CASE WHEN query_index = 0 THEN image_macs END) AS build_image_macs "
            "FROM cumulative_cost GROUP BY config_key, corpus_id ORDER BY config_key"
        )

    def lifetime(self, config_key: str, corpus_id: str) -> tuple[int, int]:
        """(queries logged, image MACs spent so far, build included) for one configuration on one corpus.

        The last point of the ``cumulative_cost`` curve, as one aggregate: the app asks after every
        search, and the view's window over the whole log grows with it.
        """
        queries, macs = (
            self._cursor()
            .execute(
                "SELECT count(*), max(build_image_macs) + sum(image_macs) FROM queries "
                "WHERE config_key = ? AND corpus_id = ?",
                [config_key, corpus_id],
            )
            .fetchone()
        )
        return int(queries), int(macs or 0)

    def first_queries_levels(self, config_key: str, corpus_id: str, n_queries: int) -> pd.DataFrame:
        """Per-level rows of the first ``n_queries`` logged queries: query_index (from 1), level, encoder_id,
        image_macs, misses."""
        return self.frame(
            "WITH q AS (SELECT query_id, row_number() OVER (ORDER BY query_id) AS query_index FROM queries "
            "WHERE config_key = ? AND corpus_id = ?) "
            "SELECT q.query_index, l.level, l.encoder_id, l.image_macs, l.misses FROM q JOIN query_levels l "
            "USING (query_id) WHERE q.query_index <= ? ORDER BY q.query_index, l.level",
            [config_key, corpus_id, n_queries],
        )

    def recent_queries(self, limit: int = 20) -> pd.DataFrame:
        return self.frame(
            "SELECT query_id, ts, config_key, query, image_macs, text_macs, latency_ms FROM queries "
            "ORDER BY query_id DESC LIMIT ?",
            [limit],
        )

    def handed_share(self, config_key: str, corpus_id: str, corpus_size: int) -> float:
        """The log's measured alpha: share of the corpus that this configuration's logged queries handed above
        level 1 (evaluations, other ks and ``index`` write features, never the log)."""
        if corpus_size < 1:
            return 0.0
        n = self._scalar(
            "SELECT count(DISTINCT image_id) FROM (SELECT unnest(from_json(handed_ids, '[[\"VARCHAR\"]]')[1]) "
            "AS image_id FROM queries WHERE config_key = ? AND corpus_id = ?)",
            [config_key, corpus_id],
        )
        return n / corpus_size

    def lifetime_cost(self, config_key: str, corpus_id: str) -> int:
        """The configuration's own lifetime image MACs from its log: build + each image each level >= 2 was
        handed, once, at that level's MACs per image (``analysis.accounting`` counts the same in Python)."""
        return self._scalar(
            "WITH q AS (SELECT build_image_macs, from_json(handed_ids, '[[\"VARCHAR\"]]') AS handed, "
            'from_json(level_rows, \'[{"macs_per_image": "BIGINT"}]\') AS levels FROM queries '
            "WHERE config_key = ? AND corpus_id = ?), "
            "steps AS (SELECT unnest(range(1, len(handed) + 1)) AS i, handed, levels FROM q), "
            "handed AS (SELECT DISTINCT i, unnest(handed[i]) AS image_id, levels[i + 1].macs_per_image AS macs "
            "FROM steps) "
            "SELECT coalesce((SELECT max(build_image_macs) FROM q), 0) + coalesce((SELECT sum(macs) FROM handed), 0)",
            [config_key, corpus_id],
        )

    def handed_log(self, config_key: str, corpus_id: str) -> list[list[list[str]]]:
        """Each logged query's hand-offs, in logging order (``[query][i]``: the ids level i+1 handed on)."""
        rows = self._cursor().execute(
            "SELECT handed_ids FROM queries WHERE config_key = ? AND corpus_id = ? ORDER BY query_id",
            [config_key, corpus_id],
        )
        return [json.loads(handed) for (handed,) in rows.fetchall()]

    def _scalar(self, sql: str, params: Sequence) -> int:
        return int(self._cursor().execute(sql, list(params)).fetchone()[0] or 0)

    # -- evaluations ---------------------------------------------------------------------------

    def save_evaluation(self, record: EvalRecord) -> None:
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [datetime.now(UTC).replace(tzinfo=None), *astuple(record)],
            )

    def evaluations(self, dataset: str | None = None) -> pd.DataFrame:
        """Every stored evaluation in time order, or only those on ``dataset``."""
        if dataset is None:
            return self.frame("SELECT * FROM evaluations ORDER BY ts")
        return self.frame("SELECT * FROM evaluations WHERE dataset = ? ORDER BY ts", [dataset])


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as err:
        message = str(err)
        if "lock" in message.lower():
            holder = message.split("is held in", 1)[-1].split(". See", 1)[0].strip() if "held in" in message else ""
            raise StoreError(
                f"database {path} is in use by another process{f' ({holder})' if holder else ''}; "
                "close it, or pass another --db"
            ) from err
        raise StoreError(f"cannot open database {path}: {message.splitlines()[0]}") from err
    except duckdb.Error as err:
        raise StoreError(f"cannot open database {path}: {str(err).splitlines()[0]}") from err
