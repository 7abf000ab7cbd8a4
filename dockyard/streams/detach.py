"""docker's detach keys (``--detach-keys``, default ctrl-p,ctrl-q): parsing the spec, and
spotting the sequence in terminal input — on the client (``dockyard attach``/``exec -it``)
and in the daemon (exec streams, as docker's clients expect)."""

from __future__ import annotations

from dockyard.errors import InvalidArgument

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """docker's ``--detach-keys`` format: comma-separated keys, each a single
    character or ``ctrl-<x>`` with x in a-z, @, [, \\, ], ^, _ (so
    ``"ctrl-p,ctrl-q"`` is b"\\x10\\x11")."""
    out = bytearray()
    for key in spec.split(","):
        k = key.strip()
        if len(k) == 1:
            out += k.encode()
            continue
        low = k.lower()
        if low.startswith("ctrl-") and len(k) == 6:
            c = low[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            if c in "@[\\]^_":
                out.append(ord(c) - ord("@"))  # ctrl-@ is NUL, ctrl-[ ESC, ...
                continue
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    if not out:
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class EscapeMatcher:
    """Filters terminal input for the detach sequence.

    Bytes that may start the sequence are held back until it is complete (then
    :meth:`feed` reports the detach and the sequence is never sent) or broken (then
    they are sent, in order, with what follows), so typing ctrl-p alone still reaches
    the container."""

    def __init__(self, keys: bytes) -> None:
        if not keys:
            raise ValueError("empty detach sequence")
        self.keys = keys
        self._matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """``(bytes to send, detached)``. After a detach, the rest of ``data`` is dropped."""
        keys = self.keys
        out = bytearray()
        for b in data:
            if b == keys[self._matched]:
                self._matched += 1
                if self._matched == len(keys):
                    self._matched = 0
                    return bytes(out), True
                continue
            if self._matched:
                # The partial match was just input after all: send it, then see
                # whether this byte starts a new match.
                out += keys[: self._matched]
                self._matched = 0
                if b == keys[0]:
                    self._matched = 1
                    continue
            out.append(b)
        return bytes(out), False
