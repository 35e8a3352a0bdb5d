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
import threading

__all__ = ["new_token", "hash_token", "token_matches", "source_of_token", "TokenCache"]

#: scrypt's cost: 2**14 rounds, 8 MiB of memory, about 50 ms per check
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def new_token(source: str) -> str:
    return f"{source}:{secrets.token_urlsafe(32)}"


def source_of_token(token: str) -> str | None:
    """The source a token names (None for anything else, printable ASCII only)."""
    if not token.isascii() or not token.isprintable():
        return None
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
    """Valid tokens already checked against a hash, by ``(sha256 of the token, the hash)``; used
    from threads (the service checks tokens off its event loop), hence the lock. Only valid ones
    are kept: forged tokens cannot push them out."""

    def __init__(self, size: int = 1024) -> None:
        self._valid: dict[tuple[bytes, str], None] = {}
        self._size = size
        self._lock = threading.Lock()

    def known_valid(self, token: str, hashed: str) -> bool:
        with self._lock:
            return (hashlib.sha256(token.encode()).digest(), hashed) in self._valid

    def matches(self, token: str, hashed: str) -> bool:
        key = (hashlib.sha256(token.encode()).digest(), hashed)
        with self._lock:
            if key in self._valid:
                return True
        if not token_matches(token, hashed):  # the slow part, outside the lock
            return False
        with self._lock:
            while len(self._valid) >= self._size:
                self._valid.pop(next(iter(self._valid)))
            self._valid[key] = None
        return True
