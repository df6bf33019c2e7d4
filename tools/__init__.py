"""Command-line tools that work on the project rather than in it (run as ``python -m tools.NAME``)."""
