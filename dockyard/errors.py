"""Typed errors. Every layer raises these; the API maps each kind to one HTTP status
(see ``http_status``) and a ``{"message": ...}`` body, as moby does."""

from __future__ import annotations


class DockyardError(Exception):
    """Base class; ``str(err)`` is the one-line message shown to users."""

    status = 500


class InvalidArgument(DockyardError):
    status = 400


class Unauthorized(DockyardError):
    status = 401


class Forbidden(DockyardError):
    status = 403


class NotFound(DockyardError):
    status = 404


class Conflict(DockyardError):
    status = 409


class NotModified(DockyardError):
    status = 304


class NotImplementedYet(DockyardError):
    status = 501


class Unavailable(DockyardError):
    status = 503


class DataCorruption(DockyardError):
    """Content did not match its digest or size, or an archive is malformed."""

    status = 400


def http_status(err: BaseException) -> int:
    return err.status if isinstance(err, DockyardError) else 500
