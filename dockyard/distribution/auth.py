"""Registry authentication: the credentials a client hands the daemon (``X-Registry-Auth``,
``POST /auth``), the registry's ``WWW-Authenticate`` challenges, and tokens from a Bearer
realm as docker's client gets them — a GET with Basic credentials (``offline_token=true``
at login, for a refresh token), or an OAuth2 POST with a refresh token (an identity token)."""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from dockyard.errors import InvalidArgument, Unauthorized

CLIENT_ID = "docker"  # what docker sends; token servers log it
MIN_TOKEN_TTL = 60  # seconds; docker's floor for expires_in


@dataclass(frozen=True)
class AuthConfig:
    """docker's types/registry.AuthConfig, the part a registry sees."""

    username: str = ""
    password: str = ""
    identity_token: str = ""  # a refresh token from an earlier login
    registry_token: str = ""  # a bearer token, used as it is
    server: str = ""

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    @classmethod
    def from_json(cls, doc: object) -> AuthConfig:
        if not isinstance(doc, dict):
            raise InvalidArgument("invalid auth configuration: not a JSON object")
        auth = str(doc.get("auth") or "")
        username, password = str(doc.get("username") or ""), str(doc.get("password") or "")
        if auth and not username:  # config.json's "auth": base64 of user:password
            try:
                username, _, password = base64.b64decode(auth).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidArgument("invalid auth configuration: bad auth field") from None
        return cls(username, password, str(doc.get("identitytoken") or ""),
                   str(doc.get("registrytoken") or ""), str(doc.get("serveraddress") or ""))

    @classmethod
    def from_header(cls, value: str | None) -> AuthConfig | None:
        """``X-Registry-Auth``: base64url (padded or not) of the JSON; absent/empty: None."""
        if not value or not value.strip():
            return None
        value = value.strip()
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            doc = json.loads(raw) if raw.strip() else {}
        except (binascii.Error, ValueError):
            raise InvalidArgument("invalid X-Registry-Auth header: not base64url-encoded JSON") from None
        config = cls.from_json(doc)
        return None if config.anonymous else config

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lowercased
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """``WWW-Authenticate`` (RFC 7235): ``Bearer realm="...",service="...",scope="a:b:pull,push"``.
    Quoted values may hold commas; a new scheme starts at a token not followed by ``=``."""
    challenges: list[Challenge] = []
    i, n = 0, len(header)
    while i < n:
        while i < n and header[i] in " ,":
            i += 1
        start = i
        while i < n and header[i] not in " ,=":
            i += 1
        word = header[start:i]
        if not word:
            break
        if i < n and header[i] == "=" and challenges:  # a parameter of the current challenge
            i += 1
            if i < n and header[i] == '"':
                i += 1
                value = []
                while i < n and header[i] != '"':
                    if header[i] == "\\" and i + 1 < n:
                        i += 1
                    value.append(header[i])
                    i += 1
                i += 1
                challenges[-1].params[word.lower()] = "".join(value)
            else:
                vstart = i
                while i < n and header[i] != ",":
                    i += 1
                challenges[-1].params[word.lower()] = header[vstart:i].strip()
        else:
            challenges.append(Challenge(word.lower(), {}))
    return challenges


@dataclass
class Token:
    value: str
    expires: float  # time.monotonic()
    refresh_token: str = ""

    def fresh(self) -> bool:
        return time.monotonic() < self.expires - 5


Fetch = Callable[[str, str, dict[str, str], bytes | None], tuple[int, bytes]]
"""(method, url, headers, body) -> (status, body): an HTTP round trip to the realm."""


def fetch_token(fetch: Fetch, challenge: Challenge, scopes: list[str], auth: AuthConfig | None,
                offline: bool = False) -> Token:
    """A token from the challenge's realm for ``scopes``. Anonymous: a plain GET (Docker Hub
    issues anonymous pull tokens). An identity token: the OAuth2 refresh grant (POST).
    Username and password: GET with Basic credentials."""
    realm = challenge.params.get("realm", "")
    if not realm.startswith(("http://", "https://")):
        raise Unauthorized(f"invalid token realm in the registry's challenge: {realm!r}")
    service = challenge.params.get("service", "")
    if auth and auth.registry_token:
        return Token(auth.registry_token, time.monotonic() + 3600)
    if auth and auth.identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": auth.identity_token, "service": service,
                "client_id": CLIENT_ID, "access_type": "offline", "scope": " ".join(scopes)}
        status, body = fetch("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
                             urllib.parse.urlencode(form).encode())
    else:
        query = [("service", service)] if service else []
        query += [("scope", s) for s in scopes]
        headers = {}
        if auth and not auth.anonymous:
            headers["Authorization"] = auth.basic()
            if offline:
                query += [("offline_token", "true"), ("client_id", CLIENT_ID)]
        sep = "&" if "?" in realm else "?"
        status, body = fetch("GET", realm + (sep + urllib.parse.urlencode(query) if query else ""), headers, None)
    if status != 200:
        raise Unauthorized(f"unauthorized: {_token_error(body, status)}")
    try:
        doc = json.loads(body)
        value = doc.get("token") or doc.get("access_token") or ""
        ttl = max(int(doc.get("expires_in") or 0), MIN_TOKEN_TTL)
    except (ValueError, AttributeError, TypeError):
        raise Unauthorized("unauthorized: the token server's answer is not JSON") from None
    if not value:
        raise Unauthorized("unauthorized: the token server answered no token")
    return Token(value, time.monotonic() + ttl, str(doc.get("refresh_token") or ""))


def _token_error(body: bytes, status: int) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("details", "detail", "message", "error_description", "error"):
            if isinstance(doc.get(key), str) and doc[key]:
                return doc[key]
        errors = doc.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict) and errors[0].get("message"):
            return str(errors[0]["message"])
    return "incorrect username or password" if status == 401 else f"token server answered HTTP {status}"


__all__ = ["AuthConfig", "Challenge", "Token", "fetch_token", "parse_challenges"]
