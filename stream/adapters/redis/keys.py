"""Every Redis key Soirée reads or writes, in one place (other programs read them too: see the
README, "What Redis holds").

::

    soiree:election:<id>                          string  an election definition (PRODUCT.md JSON)
    soiree:elections                              set     the registered election ids
    soiree:revision:<id>                          string  "<revision>:<digest>" of an election's definition
    soiree:recount:<id>                           string  a revision being counted again (--replace)
    soiree:alive:<random>                         string  a worker's marker: gone = Redis lost its data
    soiree:results:<election>:<level>:<area>      string  an area's Standings JSON
    soiree:{<app>:<table>:<partition>}:data       hash    a Faust table partition (the Redis store)
    soiree:{<app>:<table>:<partition>}:offset     string  the changelog offset that partition's data includes
    soiree:{<app>:<table>:<partition>}:owner      int     the owner epoch of its latest owner (fencing)

The braces are Redis Cluster hash tags: one partition's data and offset share a slot. Ids never
contain ``:`` (the contract's character set), so no two keys of different areas can collide.
"""

from __future__ import annotations

import uuid

__all__ = [
    "PREFIX",
    "ELECTIONS",
    "election_key",
    "revision_key",
    "recount_key",
    "alive_marker",
    "results_key",
    "results_pattern",
    "table_partition_prefix",
    "table_pattern",
]

PREFIX = "soiree"
#: The set of registered election ids.
ELECTIONS = f"{PREFIX}:elections"


def election_key(election_id: str) -> str:
    """An election's definition (JSON)."""
    return f"{PREFIX}:election:{election_id}"


def revision_key(election_id: str) -> str:
    """The revision of an election's definition: workers check it to pick up a replaced one."""
    return f"{PREFIX}:revision:{election_id}"


def recount_key(election_id: str) -> str:
    """The revision a replaced election is being counted again for (``election create --replace``);
    gone once the recount finished."""
    return f"{PREFIX}:recount:{election_id}"


def alive_marker() -> str:
    """A fresh worker marker key: kept alive by its worker, its absence means Redis lost its data."""
    return f"{PREFIX}:alive:{uuid.uuid4().hex}"


def results_key(election: str, level: str, area: str) -> str:
    """An area's current standings (the ``soiree results --json`` object)."""
    return f"{PREFIX}:results:{election}:{level}:{area}"


def results_pattern(election: str, level: str = "*") -> str:
    """SCAN pattern of the standings of an election (of one level, or all); the id's own glob
    characters are escaped, so that election "a" never matches another's keys."""
    return f"{PREFIX}:results:{_glob_escape(election)}:{level}:*"


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def table_partition_prefix(app_id: str, table: str, partition: int) -> str:
    """Key prefix of one table partition (``:data`` and ``:offset`` follow), with its hash tag."""
    return f"{PREFIX}:{{{app_id}:{table}:{partition}}}"


def table_pattern(app_id: str) -> str:
    """SCAN pattern of every table partition key of an app."""
    return f"{PREFIX}:{{{app_id}:*"
