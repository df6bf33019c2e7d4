"""``python -m cascade``: the one shim from the library into the command-line face (``cascade_cli``).

The command line lives in the top-level ``cascade_cli`` package (installed as the ``cascade``
console script); this file only lets ``python -m cascade`` reach it. The layering test
names it as the face's entry point.
"""

import sys

from cascade_cli import main

sys.exit(main())
