"""Which failures are the user's, and the one line each is reported with.

The user's mistakes (a path, a setting, an input, an unwritable output folder, a missing model
file) end a command with ``error: <one line>`` and exit 2; anything else is a bug and ends with
one line too, exit 1, and ``--debug`` shows its traceback.
"""

from __future__ import annotations

import errno


class OutputWriteError(OSError):
    """The output folder cannot be written (read-only, full, no permission): the run stops.

    Everything written before stays as it is; the message is one line for the user.
    """


# OSErrors about a path the user gave (not found, not a folder, no permission)
_PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS}


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean the user's mistake (imported here, on demand, so this
    module stays importable from anywhere)."""
    from kiridashi.config import ConfigError
    from kiridashi.io import BadInput
    from kiridashi.models import ModelError

    return (OutputWriteError, ModelError, ConfigError, BadInput)


def is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, user_error_types()):
        return True
    return isinstance(exc, OSError) and exc.errno in _PATH_ERRNOS and exc.filename is not None


def one_line(exc: BaseException) -> str:
    """The first line of the message (an OSError's strerror and file name)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = (
            exc.strerror
            if exc.filename is None or isinstance(exc, OutputWriteError)
            else (f"{exc.filename}: {exc.strerror}")
        )
    else:
        text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
