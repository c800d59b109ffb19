"""User-facing failures: one clear line and a non-zero exit instead of a traceback wall."""
from __future__ import annotations

import functools
import os
import sys


class UserError(Exception):
    """A problem the user can fix (bad config, missing data, unreadable file). Says how."""


# Exceptions whose message is already written for a user (data_pipelines raises these).
_USER_FACING = (UserError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


def cli(main):
    """Wrap a command's main: user-facing errors print one line on stderr and exit 2.

    Set AVJAX_TRACEBACK=1 to see the traceback anyway.
    """
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except _USER_FACING as e:
            if os.environ.get("AVJAX_TRACEBACK"):
                raise
            name = "error" if isinstance(e, UserError) else type(e).__name__
            print(f"{name}: {e}", file=sys.stderr)
            sys.exit(2)
    return wrapper
