"""``python -m cascade``: the command line (implemented in ``analysis.cli``, which owns the DuckDB store).

This file is an entry point at the top of the import graph, like ``app.py``;
the layering test exempts it from the rule that ``cascade`` never imports ``analysis``.
"""

import sys

from analysis.cli import main

sys.exit(main())
