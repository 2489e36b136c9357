"""The one exception type users see.

A ``DatafreeError`` is raised for bad input (unknown names, missing paths,
mismatched checkpoints, ...). Its message names the problem *and* the fix; the
CLI prints it on one line without a traceback and exits with status 2.
"""


class DatafreeError(ValueError):
    """User-facing error: the message says what is wrong and what to change."""


class ImageSizesDiffer(DatafreeError):
    """A folder's images differ in size and no size was asked for (``data.image_size``)."""


def first_line(error: BaseException, limit: int = 240) -> str:
    """What an exception says, in one short line for a message (its first two non-empty lines), or its type."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:2])[:limit] or type(error).__name__
