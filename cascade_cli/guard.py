"""The one place where an exception becomes a printed line and an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from cascade.errors import CascadeError


class UsageError(CascadeError):
    """The command line itself is wrong (unknown option, a bad number): exit code 2."""


def guarded(body: Callable[[], int]) -> int:
    """Run a command's body: errors become one line on stderr and an exit code, never a traceback.

    UsageError exits 2, CascadeError and anything unexpected (a full disk, say) exit 1,
    Ctrl-C exits 130; ``CASCADE_DEBUG=1`` re-raises the unexpected ones.
    """
    try:
        return body()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except CascadeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the last line of defence: a message, not a traceback
        if os.environ.get("CASCADE_DEBUG"):
            raise
        print(f"error: unexpected {type(err).__name__}: {err} (CASCADE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
