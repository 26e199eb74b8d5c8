"""The one error type that entry points turn into a single line and a non-zero exit."""


class TfhfError(Exception):
    """A problem with the user's input or environment, stated in one line.

    Raised before any output is written whenever possible; entry points print
    `error: <message>` and exit with status 2 instead of a traceback.
    """
