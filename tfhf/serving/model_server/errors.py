"""The refusals both front ends translate into status codes."""


class RequestError(Exception):
    """The client's mistake: answered with HTTP 400 / gRPC INVALID_ARGUMENT."""


class NotFound(Exception):
    """Unknown model, version or signature: HTTP 404 / gRPC NOT_FOUND."""


class Overloaded(Exception):
    """A bound of the server's is reached (live streams): HTTP 503 / gRPC RESOURCE_EXHAUSTED,
    answered at once; the client may retry later."""


class Cancelled(Exception):
    """The client went away before its request was done: the rest of the work is skipped."""
