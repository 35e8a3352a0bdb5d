"""A source's bearer token, and the only thing kept of it: an scrypt hash.

A token is ``<source id>:<secret>`` (ids never contain ``:``), so the service finds the one hash
to check instead of trying every source's; the secret is 32 random bytes. The hash is
``scrypt$<n>$<r>$<p>$<salt>$<digest>`` (base64), checked in constant time. scrypt is slow on
purpose (a stolen file does not give the tokens away), so ``TokenCache`` remembers the tokens
it already checked, by their SHA-256, never the token itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["new_token", "hash_token", "token_matches", "source_of_token", "TokenCache"]

#: scrypt's cost: 2**14 rounds, 8 MiB of memory, about 50 ms per check
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def new_token(source: str) -> str:
    return f"{source}:{secrets.token_urlsafe(32)}"


def source_of_token(token: str) -> str | None:
    """The source a token names (None for anything else)."""
    source, colon, secret = token.partition(":")
    return source if colon and source and secret else None


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_token(token: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_encode(salt)}${_encode(digest)}"


def token_matches(token: str, hashed: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            token.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class TokenCache:
    """Tokens already checked against a hash: ``(sha256 of the token, the hash) -> matched``."""

    def __init__(self, size: int = 1024) -> None:
        self._known: dict[tuple[bytes, str], bool] = {}
        self._size = size

    def matches(self, token: str, hashed: str) -> bool:
        key = (hashlib.sha256(token.encode()).digest(), hashed)
        found = self._known.get(key)
        if found is None:
            if len(self._known) >= self._size:
                self._known.pop(next(iter(self._known)))
            found = self._known[key] = token_matches(token, hashed)
        return found
