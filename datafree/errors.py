"""The one exception type users see.

A ``DatafreeError`` is raised for bad input (unknown names, missing paths,
mismatched checkpoints, ...). Its message names the problem *and* the fix; the
CLI prints it on one line without a traceback and exits with status 2.
"""


class DatafreeError(ValueError):
    """User-facing error: the message says what is wrong and what to change."""
