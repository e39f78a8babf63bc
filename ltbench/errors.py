"""One exception type for every user-facing error, and the one for a stop asked by SIGTERM.

The CLI prints ``LtbenchError`` as a single line and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class LtbenchError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``), raised where Ctrl-C would raise ``KeyboardInterrupt``, so that both
    stop a run the same way; the CLI exits with 143 (128 + SIGTERM) for it, 130 for Ctrl-C."""
