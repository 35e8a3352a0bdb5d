"""Election definitions, kept in Redis so that workers, ``ingest`` and ``results`` share one roll.

Layout: ``soiree:election:<id>`` holds the definition's JSON (the PRODUCT.md shape);
the set ``soiree:elections`` lists the ids. The durable copy is a Kafka topic
(``election_log``): Redis may lose its data, the topic does not.
"""

from __future__ import annotations

import gc
import sys
import time
import zlib
from typing import Any, NamedTuple

import orjson
import redis
import redis.asyncio as aioredis

from stream.domain.messages import NATION, Election
from stream.errors import ElectionsUnavailable

__all__ = [
    "save_election",
    "restore_definitions",
    "load_election",
    "list_elections",
    "ElectionCache",
    "ElectionIndex",
    "Placement",
    "ElectionsUnavailable",
]


def _key(election_id: str) -> str:
    return f"soiree:election:{election_id}"


def save_election(client: redis.Redis, election: Election) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.set(_key(election.election), election.model_dump_json())
        pipe.sadd("soiree:elections", election.election)
        pipe.execute()


async def restore_definitions(client: aioredis.Redis, definitions: dict[str, bytes]) -> list[str]:
    """Put back the definitions Redis lacks; returns their ids.

    SET NX: a definition registered meanwhile went to the durable log first, so it is the newer."""
    ids = list(definitions)
    if not ids:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for election_id in ids:
            pipe.exists(_key(election_id))
        missing = [election_id for election_id, found in zip(ids, await pipe.execute()) if not found]
    if not missing:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for election_id in missing:
            pipe.set(_key(election_id), definitions[election_id], nx=True)
            pipe.sadd("soiree:elections", election_id)
        answers = await pipe.execute()
    return [election_id for election_id, written in zip(missing, answers[::2]) if written]


def load_election(client: redis.Redis, election_id: str) -> Election | None:
    raw = client.get(_key(election_id))
    return None if raw is None else Election.model_validate_json(raw)


def list_elections(client: redis.Redis) -> list[str]:
    return sorted(member.decode() for member in client.smembers("soiree:elections"))


class Placement(NamedTuple):
    """Where a bureau of the roll belongs, and its registered voters."""

    commune: str
    department: str
    registered: int


class _AreaNames:
    """``(level, area) -> (name, bureaux_total)``; a bureau's name is made when asked, not stored."""

    __slots__ = ("_roll", "_commune_names", "_fixed")

    def __init__(
        self,
        roll: dict[str, Placement],
        commune_names: dict[str, str],
        fixed: dict[tuple[str, str], tuple[str, int]],
    ) -> None:
        self._roll = roll
        self._commune_names = commune_names  # as in the roll, possibly empty
        self._fixed = fixed

    def __getitem__(self, key: tuple[str, str]) -> tuple[str, int]:
        level, area = key
        if level != "bureau":
            return self._fixed[key]
        return f"{self._commune_names[self._roll[area].commune]} {area}".strip(), 1


class ElectionIndex:
    """What a worker needs of an election definition, and nothing more.

    A validated ``models.Election`` keeps a pydantic object per bureau: about 1.6 kB each, 110 MB
    for the 2017 roll and over a gigabyte for a million bureaux. A worker only looks bureaux up,
    so it keeps one small tuple per bureau, names of communes and departments once, and the
    definition itself compressed (to register it again if Redis loses it). Built from the JSON
    that ``save_election`` stored, which was validated then.
    """

    def __init__(self, definition: dict[str, Any], raw: bytes) -> None:
        self.election: str = definition["election"]
        self.name: str = definition["name"]
        self.candidate_list: list[str] = [candidate["id"] for candidate in definition["candidates"]]
        self.candidate_ids = frozenset(self.candidate_list)
        intern = sys.intern
        roll: dict[str, Placement] = {}
        names: dict[tuple[str, str], str] = {("nation", NATION): "France"}
        counts: dict[tuple[str, str], int] = {("nation", NATION): 0}
        communes_of_department: dict[str, dict[str, None]] = {}
        commune_names: dict[str, str] = {}
        for entry in definition["bureaux"]:
            commune, department = intern(entry["commune"]), intern(entry["department"])
            roll[entry["bureau"]] = Placement(commune, department, entry["registered"])
            commune_names.setdefault(commune, entry.get("commune_name", ""))
            communes_of_department.setdefault(department, {})[commune] = None
            for key, name in (
                (("commune", commune), entry.get("commune_name") or commune),
                (("department", department), entry.get("department_name") or department),
            ):
                if key not in names:
                    names[key] = name
                counts[key] = counts.get(key, 0) + 1
            counts[("nation", NATION)] += 1
        self.roll = roll
        self.communes_of_department = {
            department: list(communes) for department, communes in communes_of_department.items()
        }
        self.roll_by_commune = {
            commune: department
            for department, communes in self.communes_of_department.items()
            for commune in communes
        }
        self.areas = _AreaNames(
            roll, commune_names, {key: (name, counts[key]) for key, name in names.items()}
        )
        self._definition = zlib.compress(raw, 1)

    @classmethod
    def from_json(cls, raw: bytes) -> ElectionIndex:
        return cls(orjson.loads(raw), raw)

    def definition_json(self) -> bytes:
        """The definition as registered (the PRODUCT.md JSON)."""
        return zlib.decompress(self._definition)


class ElectionCache:
    """Definitions by id, fetched once; an unknown id is asked again at most once a second,
    so an election registered after the worker started is picked up.

    ``alive_marker`` is a key the worker keeps in Redis: when it is gone, Redis lost its data,
    and an id missing from it may well be registered (in the durable log, being restored):
    the caller is told to wait rather than to reject the report as unknown."""

    def __init__(
        self, client: redis.Redis, retry_after: float = 1.0, alive_marker: str | None = None
    ) -> None:
        self._client = client
        self._known: dict[str, ElectionIndex] = {}
        self._missing_since: dict[str, float] = {}
        self._retry_after = retry_after
        self._alive_marker = alive_marker

    def get(self, election_id: str) -> ElectionIndex | None:
        election = self._known.get(election_id)
        if election is not None:
            return election
        asked = self._missing_since.get(election_id)
        if asked is not None and time.monotonic() - asked < self._retry_after:
            return None
        try:
            raw = self._client.get(_key(election_id))
            wiped = (
                raw is None and self._alive_marker is not None and not self._client.exists(self._alive_marker)
            )
        except redis.RedisError as exc:
            raise ElectionsUnavailable(f"cannot read election {election_id!r} from Redis: {exc}") from exc
        if wiped:
            raise ElectionsUnavailable(
                f"election {election_id!r} is not in Redis, which lost its data: waiting for the restore"
            )
        if raw is None:
            self._missing_since[election_id] = time.monotonic()
            return None
        election = self._known[election_id] = ElectionIndex.from_json(raw)
        # A national roll is a million long-lived objects: keep them out of the garbage
        # collector's full passes, which otherwise pause the worker for hundreds of ms.
        gc.freeze()
        return election

    def preload(self, election_ids: list[str]) -> None:
        """Fetch and index definitions before the first report: a national roll takes a second."""
        for election_id in election_ids:
            self.get(election_id)

    def known(self) -> list[ElectionIndex]:
        """Every definition fetched so far (re-registered if Redis loses them)."""
        return list(self._known.values())
