"""One exception type for every user-facing error.

The CLI prints ``LtbenchError`` as a single line and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class LtbenchError(Exception):
    """A problem with the user's input or environment, reported as one line."""
