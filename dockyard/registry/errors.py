"""The distribution spec's errors: a code, an HTTP status, and the
``{"errors": [{"code", "message", "detail"}]}`` body."""

from __future__ import annotations

import json
from typing import Any

# code -> (HTTP status, the spec's message)
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAYLOAD_TOO_LARGE": (413, "request entity too large"),
    "UNKNOWN": (500, "unknown error"),
}


class RegistryError(Exception):
    def __init__(self, code: str, message: str | None = None, detail: Any = None, status: int | None = None) -> None:
        self.code = code
        self.status = status or CODES[code][0]
        self.message = message or CODES[code][1]
        self.detail = detail
        super().__init__(f"{code}: {self.message}")

    def body(self) -> bytes:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}).encode()
