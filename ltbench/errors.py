"""One exception type for every user-facing error, and the one for a stop asked by SIGTERM.

The CLI prints ``LtbenchError`` as a single line and exits with status 2 (1 for :class:`CannotWrite`,
and for an ``OSError`` of the environment, such as a read-only study folder); anything else is a
bug and keeps its traceback.
"""


class LtbenchError(Exception):
    """A problem with the user's input or environment, reported as one line (exit status 2)."""

    exit_status = 2


class CannotWrite(LtbenchError):
    """A folder or file that cannot be written or removed (read-only, permissions, a full disk):
    one line naming it, exit status 1, as for any failure that is not the input's fault."""

    exit_status = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``), raised where Ctrl-C would raise ``KeyboardInterrupt``, so that both
    stop a run the same way; the CLI exits with 143 (128 + SIGTERM) for it, 130 for Ctrl-C."""
