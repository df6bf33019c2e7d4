"""The database's schema and its migrations, as data: ``analysis.store`` runs them.

Schema history (bump SCHEMA_VERSION and add a migration for every change):
  1: meta, features, file_ids, queries, query_levels, evaluations; views cumulative_cost, config_encoders.
  2: a query's per-level rows move into one JSON column, ``queries.level_rows`` (a list of
     objects), and ``query_levels`` becomes a view that unnests it; ``queries`` loses its primary
     key and sequence (ids come from the one writing process), and its ``levels`` and ``ks`` lists
     (the level rows hold each level's encoder_id and k). A logged query is then one
     single-row INSERT, a third of v1's price: DuckDB appends every column (and every field of a
     LIST of STRUCT) separately, and an index and a sequence each add to the commit.
     Each row also holds ``handed_ids``, the ids level 1 handed on (a JSON list; empty for one level),
     so the log's measured alpha is SQL over the log. v1 queries did not log handed ids and migrate
     with an empty list.
  3: ``handed_ids`` holds what every level handed on (a JSON list of lists: ``[i]`` is what level
     i+1 handed to level i+2), so a configuration's own lifetime cost is a function of its log
     (``analysis.accounting``; ``lifetime_cost`` here). v2 rows, which logged level 1's hand-off
     only, become ``[that list]``: their deeper hand-offs are unknown and count as none.
     Evaluations stored under a preset's name move to the dataset's one label (the command line
     always wrote ``world:test``; the page wrote ``shapes:test`` and ``flickr30k-cpu:test``).

A migration runs every step from the file's version to SCHEMA_VERSION in one transaction, so a
killed migration leaves the file as it was.
"""

from __future__ import annotations

SCHEMA_VERSION = 3

SCHEMA = """
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
    handed_ids VARCHAR NOT NULL     -- JSON list of lists: [i] = the ids level i+1 handed on ([] for one level)
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
    ("level", "INTEGER"),
    ("encoder_id", "VARCHAR"),
    ("k", "INTEGER"),
    ("candidates", "INTEGER"),
    ("hits", "INTEGER"),
    ("misses", "INTEGER"),
    ("macs_per_image", "BIGINT"),
    ("image_macs", "BIGINT"),
    ("text_macs", "BIGINT"),
    ("latency_ms", "DOUBLE"),
)
SCHEMA = SCHEMA.replace("{LEVEL_ROW}", "{" + ", ".join(f'"{name}": "{kind}"' for name, kind in LEVEL_COLUMNS) + "}")

# v1 -> v2, statement by statement inside one transaction (``_migrate_v1``): the v1 tables step
# aside, the v2 schema is created as for a new file, the log is copied over, the v1 tables go.
MIGRATE_V1 = (
    "DROP VIEW IF EXISTS config_encoders",
    "DROP VIEW IF EXISTS cumulative_cost",
    "ALTER TABLE queries RENAME TO queries_v1",
    "ALTER TABLE query_levels RENAME TO query_levels_v1",
    SCHEMA,
    "INSERT INTO queries SELECT q.* EXCLUDE (levels, ks), coalesce((SELECT to_json(list(struct_pack("
    + ", ".join(f"{name} := l.{name}" for name, _ in LEVEL_COLUMNS)
    + ") ORDER BY l.level)) FROM query_levels_v1 l WHERE l.query_id = q.query_id), '[]'), '[]' FROM queries_v1 q",
    "DROP TABLE query_levels_v1",
    "DROP TABLE queries_v1",
    "DROP SEQUENCE query_seq",
    "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
)
LEVEL_NAMES = tuple(name for name, _ in LEVEL_COLUMNS)
INSERT_QUERY = "INSERT INTO queries VALUES (" + ", ".join(["?"] * 12) + ")"
# v2 -> v3: level 1's hand-off becomes the first of each level's; evaluations move to the dataset's label.
# The page's labels were ``PRESET:test``; these were the presets and their datasets when v3 came.
_V2_PRESET_DATASETS = {
    "shapes": "world",
    "flickr30k-vit": "flickr30k",
    "flickr30k-convnext": "flickr30k",
    "flickr30k-blip": "flickr30k",
    "coco-vit": "coco",
    "coco-convnext": "coco",
    "coco-blip": "coco",
    "flickr30k-cpu": "flickr30k",
}
MIGRATE_V2 = (
    "UPDATE queries SET handed_ids = '[' || handed_ids || ']' WHERE handed_ids <> '[]'",
    *(
        f"UPDATE evaluations SET dataset = '{dataset}:test' WHERE dataset = '{preset}:test'"
        for preset, dataset in _V2_PRESET_DATASETS.items()
    ),
    "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
)
MIGRATIONS: dict[int, tuple[str, ...]] = {1: MIGRATE_V1, 2: MIGRATE_V2}  # from version -> its statements


def migration(found: int) -> list[str]:
    """Every statement from version ``found`` to SCHEMA_VERSION, in order."""
    return [statement for version in range(found, SCHEMA_VERSION) for statement in MIGRATIONS[version]]


def level_row(number: int, trace) -> dict:
    """One level of a logged query (a ``cascade.types.LevelTrace``), as the ``query_levels`` view reads it."""
    values = (number, trace.encoder, trace.k, trace.candidates, trace.hits, trace.misses, trace.macs_per_image)
    return dict(zip(LEVEL_NAMES, (*values, trace.image_macs, trace.text_macs, trace.latency_ms)))
