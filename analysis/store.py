"""The product's memory: one DuckDB file holding the feature cache, the query log and evaluations.

It implements the engine's two protocols, ``FeatureCache`` (``get``/``put``)
and ``QueryLog`` (``record``), so ``CascadeSearcher(levels, corpus, cache=store,
log=store)`` persists everything. The cost charts are SQL over the log.

Concurrency: one ``Store`` per process, shared by all threads. Reads use a
per-thread cursor; writes are serialised by a lock and each is one transaction,
so a crash loses at most the query (or batch) in flight. A second process gets
a clear ``StoreError`` (DuckDB allows one writer), or may open read-only while
no writer holds the file.

Why one module: all of the project's SQL lives here (schema, migrations, cache, log, views), so
a change of schema is read and reviewed in one place.

Schema history (bump SCHEMA_VERSION and add a migration for every change):
  1: meta, features, file_ids, queries, query_levels, evaluations; views cumulative_cost, config_encoders.
  2: a query's per-level rows move into one JSON column, ``queries.level_rows`` (a list of
     objects), and ``query_levels`` becomes a view that unnests it; ``queries`` loses its primary
     key and sequence (ids come from the one writing process), and its ``levels`` and ``ks`` lists
     (the level rows hold each level's encoder_id and k). A logged query is then one
     single-row INSERT, a third of v1's price: DuckDB appends every column (and every field of a
     LIST of STRUCT) separately, and an index and a sequence each add to the commit.
     Each row also holds ``handed_ids``, the ids level 1 handed on (a JSON list; empty for one level),
     so the log's measured alpha is SQL over the log. Migration (``_migrate_v1``): one transaction, so a
     killed migration leaves v1 whole; v1 queries did not log handed ids and migrate with an empty list.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from cascade.corpus import FileKey
from cascade.errors import CascadeError
from cascade.types import SearchResult

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS features (
    encoder_id VARCHAR NOT NULL,
    image_id VARCHAR NOT NULL,
    shape INTEGER[] NOT NULL,
    data BLOB NOT NULL,             -- float32, C order
    PRIMARY KEY (encoder_id, image_id)
);
CREATE TABLE IF NOT EXISTS file_ids (    -- image ids by file, so an unchanged folder is not re-hashed
    path VARCHAR NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    image_id VARCHAR NOT NULL,
    PRIMARY KEY (path, size, mtime_ns)
);
CREATE TABLE IF NOT EXISTS queries (
    query_id BIGINT NOT NULL,       -- 1, 2, ... in logging order (assigned by the writing process)
    ts TIMESTAMP NOT NULL,
    config_key VARCHAR NOT NULL,    -- e.g. shapes:small>shapes:large|100,10
    corpus_id VARCHAR NOT NULL,
    corpus_size INTEGER NOT NULL,
    query VARCHAR NOT NULL,         -- verbatim, whatever it contains
    build_image_macs BIGINT NOT NULL,  -- corpus_size x level-1 MACs per image: the lifetime cost at query 0
    image_macs BIGINT NOT NULL,
    text_macs BIGINT NOT NULL,
    latency_ms DOUBLE NOT NULL,
    level_rows VARCHAR NOT NULL,    -- JSON list, one object per level (the query_levels view's columns)
    handed_ids VARCHAR NOT NULL     -- JSON list: the image ids level 1 handed to level 2 ([] for one level)
);
CREATE TABLE IF NOT EXISTS evaluations (
    ts TIMESTAMP NOT NULL,
    config_key VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    n_images INTEGER NOT NULL,
    n_queries INTEGER NOT NULL,
    r1 DOUBLE NOT NULL, r5 DOUBLE NOT NULL, r10 DOUBLE NOT NULL,   -- percent
    image_macs BIGINT NOT NULL,     -- build + every query's misses
    alpha DOUBLE NOT NULL           -- share of the corpus ever embedded above level 1
);
CREATE OR REPLACE VIEW query_levels AS
    SELECT query_id, unnest(from_json(level_rows, '[{LEVEL_ROW}]'), recursive := true) FROM queries;
CREATE OR REPLACE VIEW cumulative_cost AS
    SELECT config_key, corpus_id, 0 AS query_index, NULL::BIGINT AS query_id,
           max(build_image_macs) AS image_macs, max(build_image_macs) AS cumulative_image_macs
    FROM queries GROUP BY config_key, corpus_id
    UNION ALL
    SELECT config_key, corpus_id,
           row_number() OVER w AS query_index, query_id, image_macs,
           build_image_macs + sum(image_macs) OVER (w ROWS UNBOUNDED PRECEDING) AS cumulative_image_macs
    FROM queries
    WINDOW w AS (PARTITION BY config_key, corpus_id ORDER BY query_id);
CREATE OR REPLACE VIEW config_encoders AS
    SELECT DISTINCT q.config_key, q.corpus_id, q.corpus_size, l.level, l.encoder_id, l.macs_per_image
    FROM queries q JOIN query_levels l USING (query_id);
"""

# The per-level row: names and DuckDB types, in order (the v1 table's columns after query_id).
LEVEL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("level", "INTEGER"), ("encoder_id", "VARCHAR"), ("k", "INTEGER"), ("candidates", "INTEGER"),
    ("hits", "INTEGER"), ("misses", "INTEGER"), ("macs_per_image", "BIGINT"), ("image_macs", "BIGINT"),
    ("text_macs", "BIGINT"), ("latency_ms", "DOUBLE"),
)  # fmt: skip
_SCHEMA = _SCHEMA.replace("{LEVEL_ROW}", "{" + ", ".join(f'"{name}": "{kind}"' for name, kind in LEVEL_COLUMNS) + "}")

# v1 -> v2, statement by statement inside one transaction (``_migrate_v1``): the v1 tables step
# aside, the v2 schema is created as for a new file, the log is copied over, the v1 tables go.
_MIGRATE_V1 = (
    "DROP VIEW IF EXISTS config_encoders",
    "DROP VIEW IF EXISTS cumulative_cost",
    "ALTER TABLE queries RENAME TO queries_v1",
    "ALTER TABLE query_levels RENAME TO query_levels_v1",
    _SCHEMA,
    "INSERT INTO queries SELECT q.* EXCLUDE (levels, ks), coalesce((SELECT to_json(list(struct_pack("
    + ", ".join(f"{name} := l.{name}" for name, _ in LEVEL_COLUMNS)
    + ") ORDER BY l.level)) FROM query_levels_v1 l WHERE l.query_id = q.query_id), '[]'), '[]' FROM queries_v1 q",
    "DROP TABLE query_levels_v1",
    "DROP TABLE queries_v1",
    "DROP SEQUENCE query_seq",
    "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
)  # fmt: skip
_LEVEL_NAMES = tuple(name for name, _ in LEVEL_COLUMNS)
_INSERT_QUERY = "INSERT INTO queries VALUES (" + ", ".join(["?"] * 12) + ")"
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
        return cls(config_key, dataset, result.n_images, result.n_queries, result.r1, result.r5, result.r10,
                   result.image_macs, result.alpha)  # fmt: skip


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
            if found == 1 and not self.read_only:
                self._migrate_v1()
            elif found == 1:
                raise StoreError(f"database {self.path} has schema version 1; open it once without read-only to "
                                 f"migrate it to version {SCHEMA_VERSION}")  # fmt: skip
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
            cursor.execute(_SCHEMA)
            cursor.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        self._next_query_id = 1

    def _migrate_v1(self) -> None:
        """Schema 1 -> 2 in one transaction: killed at any point, the file still holds the whole v1 log."""
        with self._transaction() as cursor:
            for index, statement in enumerate(_MIGRATE_V1):
                cursor.execute(statement)
                if _after_migration_step is not None:
                    _after_migration_step(index)

    # -- FeatureCache --------------------------------------------------------------------------

    def get(self, encoder_id: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached features of ``image_ids`` for ``encoder_id``; absent ids are left out."""
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
        return {image_id: np.frombuffer(data, dtype=np.float32).reshape(shape) for image_id, shape, data in rows}

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

    def count_features(self, encoder_id: str) -> int:
        return self._cursor().execute("SELECT count(*) FROM features WHERE encoder_id = ?", [encoder_id]).fetchone()[0]

    # -- FileIdCache ---------------------------------------------------------------------------

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
        frame = pd.DataFrame([(*key, image_id) for key, image_id in ids.items()],
                             columns=["path", "size", "mtime_ns", "image_id"])  # fmt: skip
        with self._transaction() as cursor:
            cursor.register("new_files", frame)
            cursor.execute("INSERT INTO file_ids SELECT * FROM new_files ON CONFLICT DO NOTHING")
            cursor.unregister("new_files")

    # -- QueryLog ------------------------------------------------------------------------------

    def record(self, result: SearchResult, corpus_id: str, corpus_size: int) -> None:
        """Log one search: one queries row holding its per-level rows, in one single-row INSERT (atomic)."""
        first = result.levels[0]
        level_rows = json.dumps([
            dict(zip(_LEVEL_NAMES, (i, t.encoder, t.k, t.candidates, t.hits, t.misses, t.macs_per_image, t.image_macs,
                                    t.text_macs, t.latency_ms)))
            for i, t in enumerate(result.levels, start=1)
        ])  # fmt: skip
        ts = datetime.now(UTC).replace(tzinfo=None)
        handed_ids = json.dumps(list(first.ids) if len(result.levels) > 1 else [])
        values = [ts, result.config.key, corpus_id, corpus_size, result.query, corpus_size * first.macs_per_image,
                  result.image_macs, result.text_macs, result.latency_ms, level_rows, handed_ids]  # fmt: skip
        if self.read_only:
            raise StoreError(f"database {self.path} is open read-only")
        with self._write_lock:  # the id and the row go together: ids follow the log's order
            self._cursor().execute(_INSERT_QUERY, [self._next_query_id, *values])
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

    def embedded_share(self, encoder_ids: Sequence[str], image_ids: Sequence[str]) -> float:
        """Fraction of ``image_ids`` cached by any of ``encoder_ids`` (the measured alpha)."""
        if not image_ids or not encoder_ids:
            return 0.0
        n = (
            self._cursor()
            .execute(
                "SELECT count(DISTINCT image_id) FROM features WHERE encoder_id IN (SELECT unnest(?::VARCHAR[])) "
                "AND image_id IN (SELECT unnest(?::VARCHAR[]))",
                [list(encoder_ids), list(image_ids)],
            )
            .fetchone()[0]
        )
        return n / len(image_ids)

    def handed_share(self, config_key: str, corpus_id: str, corpus_size: int) -> float:
        """The log's measured alpha: share of the corpus that this configuration's logged queries handed above
        level 1 (evaluations, other ks and ``index`` write features, never the log)."""
        if corpus_size < 1:
            return 0.0
        n = (
            self._cursor()
            .execute(
                "SELECT count(DISTINCT image_id) FROM (SELECT unnest(from_json(handed_ids, '[\"VARCHAR\"]')) "
                "AS image_id FROM queries WHERE config_key = ? AND corpus_id = ?)",
                [config_key, corpus_id],
            )
            .fetchone()[0]
        )
        return n / corpus_size

    # -- evaluations ---------------------------------------------------------------------------

    def save_evaluation(self, record: EvalRecord) -> None:
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    datetime.now(UTC).replace(tzinfo=None), record.config_key, record.dataset, record.n_images,
                    record.n_queries, record.r1, record.r5, record.r10, record.image_macs, record.alpha,
                ],
            )  # fmt: skip

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
