"""Bearer token authentication, as the distribution registry's ``auth: token``: clients get a
JWT from an issuer's token server (``realm``) and present it; the registry verifies it
offline — signed (RS256 or ES256) by a certificate in the ``x5c`` header that is, or was
issued by, one of the configured root certificates; issued by ``issuer`` for ``service``;
within its validity; granting the repository actions the request needs (pull, push,
delete), or ``registry:catalog:*`` for the catalog."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from dockyard.registry.errors import RegistryError

_LEEWAY = 60  # seconds of clock skew tolerated


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenAuth:
    realm: str
    service: str
    issuer: str
    roots: list[Any]  # cryptography x509.Certificate

    @classmethod
    def from_files(cls, realm: str, service: str, issuer: str, root_bundle: str) -> TokenAuth:
        from cryptography import x509

        with open(root_bundle, "rb") as f:
            roots = x509.load_pem_x509_certificates(f.read())
        if not roots:
            raise ValueError(f"{root_bundle}: no certificate")
        return cls(realm, service, issuer, roots)

    def challenge(self, scope: str | None, error: str | None = None) -> str:
        parts = [f'realm="{self.realm}"', f'service="{self.service}"']
        if scope:
            parts.append(f'scope="{scope}"')
        if error:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    def check(self, header: str, kind: str, name: str, actions: list[str]) -> None:
        """Raise a 401 (with this realm's challenge) unless ``header`` carries a valid token
        granting ``actions`` on ``kind:name`` (no actions: any valid token)."""
        scope = f"{kind}:{name}:{','.join(actions)}" if actions else None
        if not header.startswith("Bearer "):
            raise _unauthorized(self.challenge(scope))
        try:
            claims = self._verify(header[7:].strip())
        except (ValueError, KeyError, TypeError) as e:
            raise _unauthorized(self.challenge(scope, "invalid_token"), f"invalid token: {e}") from None
        if not actions:
            return
        granted: set[str] = set()
        for entry in claims.get("access") or []:
            if entry.get("type") == kind and entry.get("name") == name:
                granted |= set(entry.get("actions") or [])
        if not (set(actions) <= granted or "*" in granted):
            raise _unauthorized(self.challenge(scope, "insufficient_scope"), "insufficient scope")

    def _verify(self, token: str) -> dict[str, Any]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

        head_b64, claims_b64, sig_b64 = token.split(".")
        header = json.loads(_b64decode(head_b64))
        claims = json.loads(_b64decode(claims_b64))
        chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header.get("x5c") or []]
        if not chain:
            raise ValueError("no x5c certificate chain")
        leaf = chain[0]
        if not self._trusted(chain):
            raise ValueError("not signed by a trusted certificate")
        signed = f"{head_b64}.{claims_b64}".encode()
        signature = _b64decode(sig_b64)
        key = leaf.public_key()
        alg = header.get("alg")
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            der = utils.encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                             int.from_bytes(signature[half:], "big"))
            key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        else:
            raise ValueError(f"unsupported algorithm {alg}")
        now = time.time()
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("iss") != self.issuer:
            raise ValueError(f"issuer {claims.get('iss')!r} is not {self.issuer!r}")
        if self.service not in audiences:
            raise ValueError(f"audience {audience!r} is not {self.service!r}")
        if float(claims.get("exp", 0)) + _LEEWAY < now:
            raise ValueError("expired")
        if float(claims.get("nbf", 0)) - _LEEWAY > now:
            raise ValueError("not valid yet")
        return claims

    def _trusted(self, chain: list[Any]) -> bool:
        """The chain ends in (or at) one of the roots, each certificate issued by the next."""
        for cert, issuer in zip(chain, chain[1:], strict=False):
            try:
                cert.verify_directly_issued_by(issuer)
            except Exception:
                return False
        top = chain[-1]
        for root in self.roots:
            if top == root:
                return True
            try:
                top.verify_directly_issued_by(root)
                return True
            except Exception:
                continue
        return False


def _unauthorized(challenge: str, message: str | None = None) -> RegistryError:
    err = RegistryError("UNAUTHORIZED", message)
    err.challenge = challenge  # type: ignore[attr-defined]
    return err
