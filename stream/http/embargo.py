"""The 20:00 embargo (Code électoral art. L52-2) and the operators who may see through it.

Before an election's ``publish_after``, its results and events answer ``403`` to anyone without
an operator token. ``soiree operator add NAME`` makes a token, prints it once, and keeps only
its SHA-256 under ``[operators.NAME]`` in ``settings.operators_file`` (TOML); ``serve`` reads the
file at start and again whenever its mtime changes, and compares digests with
``hmac.compare_digest``. A token comes as ``Authorization: Bearer …`` or ``?token=…`` (a
browser's EventSource cannot set headers); it is never logged (see ``SafeAccessLogger``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from stream.auth.secret_file import read_entries, write_entries
from stream.http.errors import json_error

__all__ = [
    "OperatorTokens",
    "add_operator",
    "token_digest",
    "check_access",
    "SafeAccessLogger",
    "OPERATOR_NAME",
    "OperatorExists",
]

log = logging.getLogger("stream.http")

#: An operator's name: what the TOML table is called.
OPERATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


OPERATORS_COMMENT = "Operators of `soiree serve`: SHA-256 of their tokens (`soiree operator add NAME`)."


class OperatorExists(ValueError):
    """``operator add`` of a name already in the file, without ``--replace``."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_operator(path: Path, name: str, replace: bool = False) -> str:
    """Make a token for ``name``, store its hash in ``path`` (created, mode 0600), return the token."""
    if not OPERATOR_NAME.match(name):
        raise ValueError(f"operator name {name!r}: letters, digits, '.', '_', '@' or '-', at most 64")
    operators = read_entries(path, "operators")
    if name in operators and not replace:
        raise OperatorExists(f"operator {name!r} already exists in {path}; --replace makes a new token")
    token = secrets.token_urlsafe(32)
    operators[name] = {
        "sha256": token_digest(token),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_entries(
        path,
        "operators",
        "Operators of `soiree serve`: SHA-256 of their tokens (`soiree operator add NAME`).",
        operators,
    )
    return token


class OperatorTokens:
    """The digests of ``operators_file``, read again when its mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._digests: dict[str, str] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._digests = None, {}
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            operators = read_entries(self.path, "operators")
        except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
            log.error("cannot read the operators file %s: %s; keeping the previous tokens", self.path, exc)
            return
        self._stamp = stamp
        self._digests = {name: str(entry.get("sha256", "")) for name, entry in operators.items()}

    def operator(self, token: str) -> str | None:
        """The operator whose token this is, or None."""
        self._reload()
        digest = token_digest(token)
        found = None
        for name, known in self._digests.items():  # every entry compared: the time says nothing
            if hmac.compare_digest(digest, known):
                found = name
        return found


TOKENS = web.AppKey("operator_tokens", OperatorTokens)


def request_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("token")


def check_access(
    request: web.Request, publish_after: str | None, now: datetime | None = None
) -> web.Response | None:
    """None when the request may see the election's results, else the answer to send.

    A token, when given, must be valid (401 otherwise, embargo or not); without one, the results
    are refused (403) until ``publish_after``."""
    token = request_token(request)
    if token is not None:
        if request.app[TOKENS].operator(token) is None:
            return json_error(
                401, "unauthorized", "unknown operator token", headers={"WWW-Authenticate": "Bearer"}
            )
        return None
    if publish_after is None:
        return None
    until = datetime.fromisoformat(publish_after)
    now = now or datetime.now(UTC)
    if now >= until:
        return None
    wait = max(1, math.ceil((until - now).total_seconds()))
    return json_error(
        403,
        "embargoed",
        f"results are published at {until.isoformat()}",
        headers={"Retry-After": str(wait)},
        embargoed_until=until.isoformat(),
    )


class SafeAccessLogger(AbstractAccessLogger):
    """aiohttp's access log line, with any ``token`` in the query string masked."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        url = request.rel_url
        if "token" in url.query:
            url = url.update_query({"token": "***"})
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %s %.3fs',
            request.remote,
            request.method,
            url,
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
        )
