"""The sources file (``settings.sources_file``, TOML): who may report what.

::

    [sources."prefecture-42"]
    token_hash = "scrypt$16384$8$1$…"        # the token itself is printed once, never stored
    scope = ["department:42"]                # stream/domain/scopes.py
    election = "pres2017-t1"                 # optional: every election without it
    public_key = "…"                         # optional: Ed25519, base64 of the 32 raw bytes
    created = "2026-11-30T21:00:00+00:00"

``soiree source add`` writes it (mode 0600); ``serve`` and the workers read it, and read it again
when it changes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from stream.auth.secret_file import read_entries, write_entries
from stream.auth.signatures import load_public_key, public_key_from_text, public_key_text
from stream.auth.tokens import TokenCache, hash_token, new_token, source_of_token
from stream.domain.messages import ID_PATTERN, ID_RULE
from stream.domain.scopes import ScopeEntry, parse_scope

__all__ = ["Source", "Sources", "SourceExists", "add_source", "read_sources"]

log = logging.getLogger(__name__)
_ID = re.compile(ID_PATTERN)


SOURCES_COMMENT = "Sources: who may report what (`soiree source add`). Tokens are kept as scrypt hashes."


class SourceExists(ValueError):
    """``source add`` of an id already in the file, without ``--replace``."""


@dataclass(frozen=True)
class Source:
    id: str
    token_hash: str
    scope: tuple[ScopeEntry, ...]
    election: str | None = None
    public_key: Ed25519PublicKey | None = None

    def for_election(self, election: str) -> bool:
        return self.election is None or self.election == election


def read_sources(path: Path) -> dict[str, Source]:
    """Every source of the file; ValueError naming the source and what is wrong with it."""
    found = {}
    for source_id, entry in read_entries(path, "sources").items():
        try:
            scope_items = entry.get("scope", [])
            if not isinstance(scope_items, list) or not all(isinstance(item, str) for item in scope_items):
                raise ValueError('scope must be a list of "LEVEL:AREA" strings')
            scope = tuple(parse_scope(",".join(scope_items)))
            key_text = entry.get("public_key")
            if key_text is not None and not isinstance(key_text, str):
                raise ValueError("public_key must be text (base64)")
            key = public_key_from_text(key_text) if key_text else None
            election = entry.get("election")
            if election is not None and not isinstance(election, str):
                raise ValueError("election must be an election id")
        except ValueError as exc:
            raise ValueError(f"{path}: source {source_id!r}: {exc}") from None
        found[source_id] = Source(source_id, str(entry.get("token_hash", "")), scope, election, key)
    return found


def add_source(
    path: Path,
    source_id: str,
    scope: str,
    election: str | None = None,
    public_key: Path | None = None,
    replace: bool = False,
) -> str:
    """Add (or with ``replace``, renew) a source; returns its token, which is stored nowhere."""
    for what, value in (("source id", source_id), ("election", election or "x")):
        if len(value) > 64 or not _ID.fullmatch(value):
            raise ValueError(f"{what} {value!r}: not an id ({ID_RULE}, at most 64)")
    for part in parse_scope(scope):
        if len(part.area) > 64 or not _ID.fullmatch(part.area):
            raise ValueError(f"scope {part}: {part.area!r} is not an id ({ID_RULE})")
    entries = read_entries(path, "sources")
    if source_id in entries and not replace:
        raise SourceExists(f"source {source_id!r} already exists in {path}; --replace makes a new token")
    entry: dict[str, Any] = {"scope": [str(e) for e in parse_scope(scope)]}
    if election:
        entry["election"] = election
    if public_key is not None:
        entry["public_key"] = public_key_text(load_public_key(public_key))
    token = new_token(source_id)
    entry["token_hash"] = hash_token(token)
    entry["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    entries[source_id] = entry
    write_entries(
        path,
        "sources",
        "Sources: who may report what (`soiree source add`). Tokens are kept as scrypt hashes.",
        entries,
    )
    return token


class Sources:
    """The sources file, read again when its mtime changes (a bad file keeps the last good one)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._sources: dict[str, Source] = {}
        self._tokens = TokenCache()
        self._reload()

    def _reload(self) -> None:
        """Read the file again if it changed. A file that cannot be read (any error: the workers
        and serve must not fail on it) keeps the last good sources and is reported once."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._sources = None, {}
            return
        except OSError as exc:
            log.error("cannot read the sources file %s: %s; keeping the previous sources", self.path, exc)
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp  # good or bad, this version of the file is read once
        try:
            self._sources = read_sources(self.path)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, keep the last good ones
            log.error("cannot read the sources file %s: %s; keeping the previous sources", self.path, exc)

    def cached(self, token: str) -> Source | None:
        """The source of a token already checked and valid, without checking it again (or None)."""
        source_id = source_of_token(token)
        source = self.get(source_id) if source_id else None
        if source is None or not self._tokens.known_valid(token, source.token_hash):
            return None
        return source

    def get(self, source_id: str) -> Source | None:
        self._reload()
        return self._sources.get(source_id)

    def authenticate(self, token: str) -> Source | None:
        """The source whose token this is, or None (a wrong token costs one scrypt check)."""
        source_id = source_of_token(token)
        source = self.get(source_id) if source_id else None
        if source is None or not self._tokens.matches(token, source.token_hash):
            return None
        return source
