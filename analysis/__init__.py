"""Analysis on top of the engine: cost model, Table 1, evaluation, the DuckDB store.

Importing this package does no work: no model, no database, no download.
"""
