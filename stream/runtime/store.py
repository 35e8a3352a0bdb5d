"""A Faust table store in Redis (``store="redis://host:port/db"``), registered as ``faust.stores``.

Faust's store API is synchronous and called on every table access, so a Redis round trip per
access would stall the event loop. Instead:

* each assigned partition is loaded from Redis into a local dict when the partition arrives
  (rebalance), so reads never leave the process;
* writes go to the dict and are marked dirty; a timer flushes them asynchronously, per
  partition, in one MULTI/EXEC that also stores the partition's changelog offset, so Redis
  never claims an offset its data does not include;
* on restart Faust asks ``persisted_offset`` (answered from what the load read: the store
  makes no blocking call inside the event loop) and replays only the changelog after it;
* a worker giving partitions up flushes them before the group rebalances, so the next owner
  loads everything; it reads a partition's data and offset in one transaction;
* if Redis goes away, writes wait in memory and the flush retries with backoff; if Redis comes
  back empty (restarted without persistence), the missing offset key gives it away and the
  store writes the whole partition again from memory;
* a worker that lost its partitions without knowing it (paused past its session timeout, a
  frozen VM) must not write over the next owner's state when it wakes up: each load of a
  partition takes a new **owner epoch** (INCR of its ``:owner`` key), and the flush script, like
  the tally's standings writes (``owner_epochs``, ``StandingsWriter``), writes only while the
  key still holds the writer's epoch. A fenced flush drops the partition: it is someone else's;
* what other code derived from a partition Redis lost (the standings) is lost with it. From the
  moment the store knows (a flush found the partition gone, or the changelog was replayed into a
  partition loaded without an offset) until the worker says it wrote them again
  (``standings_restored``), the partition's offset stays out of Redis: a worker killed
  meanwhile leaves data without an offset, so the next owner replays the changelog in full and
  owes the standings in turn. The offset then goes in with the whole partition.

Redis layout (readable by other programs, documented in the README)::

    soiree:{<app>:<table>:<partition>}:data    hash  key -> value (the table's serialized bytes)
    soiree:{<app>:<table>:<partition>}:offset  string, last changelog offset included in :data
                                               (absent while the partition's standings are owed)
    soiree:{<app>:<table>:<partition>}:owner   integer, the owner epoch of its latest owner

The braces are Redis Cluster hash tags: one partition's data and offset share a slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import redis
from faust.stores.base import SerializedStore
from faust.streams import current_event
from faust.types import TP
from mode import Service
from yarl import URL

from stream.adapters.redis.clients import async_client
from stream.adapters.redis.keys import table_partition_prefix
from stream.runtime import metrics

__all__ = ["RedisStore"]

#: Seconds between two flushes of dirty keys to Redis.
FLUSH_INTERVAL = 0.2
#: Longest wait between two flush attempts while Redis is unreachable.
MAX_BACKOFF = 5.0
#: Fields per HSET inside the flush script (Lua's unpack has a stack limit).
_CHUNK = 500

# KEYS: data hash, offset key, owner key. ARGV: must_exist ('1': this partition's offset key was
# written before, so its absence means Redis lost the data), offset ('' if none, '-' to delete
# it: the partition's standings are owed), the writer's owner epoch, number of fields to set,
# then field/value pairs, then fields to delete. Returns -1 if another owner took the partition
# since (fenced), 0 if the data was lost, else 1. An owner key Redis lost is taken back.
_FLUSH_SCRIPT = """
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[3] then return -1 end
if not owner then redis.call('SET', KEYS[3], ARGV[3]) end
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local sets = tonumber(ARGV[4])
local first = 5
local last_set = 4 + 2 * sets
for i = first, last_set, 2 * %(chunk)d do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 2 * %(chunk)d - 1, last_set)))
end
for i = last_set + 1, #ARGV, %(chunk)d do
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + %(chunk)d - 1, #ARGV)))
end
if ARGV[2] == '-' then redis.call('DEL', KEYS[2])
elseif ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
""".replace("%(chunk)d", str(_CHUNK))


def _masked(url: URL) -> str:
    return str(url.with_password("***")) if url.password else str(url)


class RedisStore(SerializedStore):
    """Table data in Redis, served from a local copy of the assigned partitions."""

    def __init__(self, url: str | URL, app: Any, table: Any, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        dsn = str(self.url)
        self._async = async_client(dsn)
        self._values: dict[bytes, bytes] = {}
        self._partition_of: dict[bytes, int] = {}
        self._dirty: dict[int, dict[bytes, bytes | None]] = {}
        self._pending_offsets: dict[int, int] = {}
        #: per partition: the offset read with the data at load time, then the last one written
        self._offsets: dict[int, int] = {}
        self._loaded: set[int] = set()
        #: per loaded partition, the owner epoch its load took (module docstring)
        self._epochs: dict[int, int] = {}
        #: partitions loaded while Redis had no data for them: their changelog is replayed whole
        self._lost: set[int] = set()
        #: partitions whose standings Redis lost and nobody wrote again, each with the number of
        #: the event that last made it so (``standings_owed``); their offsets stay out of Redis
        self._owed: dict[int, int] = {}
        self._owed_events = 0
        #: per owed partition, the newest changelog offset its data includes
        self._withheld: dict[int, int] = {}
        #: partitions no longer owed: the next flush writes them whole with their offset
        self._released: set[int] = set()
        self._flush_lock = asyncio.Lock()
        self._flush_script = self._async.register_script(_FLUSH_SCRIPT)
        self._failures = 0
        self._next_attempt = 0.0
        app.on_partitions_revoked.connect(self._flush_before_revoke)

    # -- identity (never show a password in logs) -------------------------------------
    def _repr_info(self) -> str:
        return f"table_name={self.table_name} url={_masked(self.url)}"

    @property
    def label(self) -> str:
        return f"{type(self).__name__}: {_masked(self.url)}"

    def _prefix(self, partition: int) -> str:
        return table_partition_prefix(self.app.conf.id, self.table_name, partition)

    # -- the SerializedStore contract --------------------------------------------------
    def _current_partition(self) -> int:
        event = current_event()
        if event is None:
            raise RuntimeError(f"table {self.table_name}: write outside of an event")
        return event.message.partition

    def _get(self, key: bytes) -> bytes | None:
        return self._values.get(key)

    def _set(self, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        if partition is None:
            partition = self._current_partition()
        if value is None:
            self._values.pop(key, None)
            self._partition_of.pop(key, None)
        else:
            # Kept for the partition's lifetime, so kept at its size: orjson returns bytes with
            # its whole growth buffer behind them (a 3 kB state holds 32 kB), which made the
            # 2017 night's 35,000 commune states cost 150 MB instead of 35 MB (``domain.encoding.dumps``).
            value = bytes(memoryview(value))
            self._values[key] = value
            self._partition_of[key] = partition
        self._dirty.setdefault(partition, {})[key] = value

    def _del(self, key: bytes) -> None:
        partition = self._partition_of.get(key)
        self._set(key, None, partition if partition is not None else self._current_partition())

    def _iterkeys(self) -> Iterator[bytes]:
        yield from list(self._values)

    def _itervalues(self) -> Iterator[bytes | None]:
        yield from list(self._values.values())

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        yield from list(self._values.items())

    def _size(self) -> int:
        return len(self._values)

    def _contains(self, key: bytes) -> bool:
        return key in self._values

    def _clear(self) -> None:
        self._values.clear()
        self._partition_of.clear()

    def apply_changelog_batch(self, batch: Any, to_key: Any, to_value: Any) -> None:
        """Recovery: the changelog's raw bytes go straight into the local copy (and to Redis)."""
        for event in batch:
            key = event.message.key
            if key is None:
                raise TypeError(f"Changelog entry is missing key: {event.message}")
            self._set(key, event.message.value, event.message.partition)
            self._pending_offsets[event.message.partition] = event.message.offset
            if event.message.partition in self._lost:
                # Redis had nothing for it, so nothing derived from it either (the standings)
                self._owe(event.message.partition)

    def reset_state(self) -> None:
        """Nothing local to remove: Redis is the state."""

    async def backup_partition(self, tp: Any, flush: bool = True, purge: bool = False, keep: int = 1) -> None:
        """Redis is already the durable copy; nothing to back up."""

    def restore_backup(self, tp: Any, latest: bool = True, backup_id: int = 0) -> None:
        """See ``backup_partition``."""

    # -- standings owed ------------------------------------------------------------------
    def _owe(self, partition: int) -> None:
        self._owed_events += 1
        self._owed[partition] = self._owed_events

    def standings_owed(self) -> dict[int, int]:
        """Partitions whose standings Redis lost (a copy, for ``standings_restored``)."""
        return dict(self._owed)

    def standings_restored(self, snapshot: dict[int, int]) -> None:
        """The standings of ``snapshot``'s partitions were written again: their offsets may go
        to Redis, unless one was owed again since the snapshot (a newer batch, a newer loss)."""
        for partition, event in snapshot.items():
            if self._owed.get(partition) == event:
                del self._owed[partition]
                self._released.add(partition)

    def _withhold(self, partition: int, offset: int | None) -> None:
        if offset is not None:
            self._withheld[partition] = max(offset, self._withheld.get(partition, -1))

    # -- offsets ----------------------------------------------------------------------
    def persisted_offset(self, tp: TP) -> int | None:
        """The changelog offset the loaded data includes (read with it), or None: replay it all."""
        # a withheld offset is not in Redis, but the local copy includes it. A partition not
        # loaded (Faust loads every assigned one first, ``on_rebalance``) has nothing local: its
        # whole changelog. No Redis call here: Faust asks from inside the event loop.
        return self._offsets.get(tp.partition, self._withheld.get(tp.partition))

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        # Called when a changelog write is acknowledged; stored at the next flush.
        self._pending_offsets[tp.partition] = max(offset, self._pending_offsets.get(tp.partition, -1))

    # -- partitions come and go ---------------------------------------------------------
    def _my_partitions(self, tps: set[TP]) -> set[int]:
        topics = self.table.changelog_topic.topics
        return {tp.partition for tp in tps if tp.topic in topics}

    async def _flush_before_revoke(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        """Runs before the group rejoins: the next owner must find everything in Redis."""
        try:
            await self.flush()
        except (redis.RedisError, OSError) as exc:
            self.log.error(
                "Redis unreachable while giving up partitions of %s (%s); "
                "the next owner will replay their changelog",
                self.table_name,
                exc,
            )

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        """Forget what is revoked; load what is new, and what this worker keeps but lost meanwhile:
        a worker paused past its session timeout may be given back the very partitions another
        loaded while it slept (Faust then sees nothing newly assigned), and what it holds of
        them is stale or was dropped (``_fenced``)."""
        await self._flush_before_revoke(self, revoked)
        for partition in self._my_partitions(revoked):
            self._forget(partition)
        new = self._my_partitions(newly_assigned)
        kept = self._my_partitions(assigned) - new
        try:
            taken = await self._taken_since(kept)
        except (redis.RedisError, OSError) as exc:  # the flush and the tally's checks fence later
            self.log.warning("Redis unreachable while checking owner epochs at a rebalance: %s", exc)
            taken = set()
        again = {p for p in kept if p not in self._loaded} | taken
        for partition in sorted(new | again):
            await self._load(partition)

    def _forget(self, partition: int) -> None:
        for key in [k for k, p in self._partition_of.items() if p == partition]:
            self._values.pop(key, None)
            self._partition_of.pop(key, None)
        self._loaded.discard(partition)
        self._epochs.pop(partition, None)
        self._offsets.pop(partition, None)
        # Writes that Redis missed (it was away when the partition was given up) are not ours
        # to make any more: flushed later, they would overwrite the next owner's newer state.
        # The changelog has them, and Redis's offset still points before them: the next owner
        # replays them.
        self._dirty.pop(partition, None)
        self._pending_offsets.pop(partition, None)
        # Standings owed are owed by the next owner: Redis has no offset for it, so it replays all.
        self._owed.pop(partition, None)
        self._withheld.pop(partition, None)
        self._released.discard(partition)

    async def _load(self, partition: int) -> None:
        self._forget(partition)
        prefix = self._prefix(partition)
        async with self._async.pipeline(transaction=True) as pipe:
            pipe.hgetall(prefix + ":data")
            pipe.get(prefix + ":offset")
            pipe.incr(prefix + ":owner")  # from now on, an earlier owner's writes are refused
            data, offset, epoch = await pipe.execute()
        self._epochs[partition] = epoch
        self._values.update(data)
        self._partition_of.update(dict.fromkeys(data, partition))
        if offset is None:
            self._offsets.pop(partition, None)
            self._lost.add(partition)
        else:
            self._offsets[partition] = int(offset)
            self._lost.discard(partition)
        self._loaded.add(partition)
        self.log.info(
            "Loaded %d keys of %s partition %d from Redis (changelog offset %s, owner epoch %d)",
            len(data),
            self.table_name,
            partition,
            offset.decode() if offset else "none: full replay",
            epoch,
        )

    async def _taken_since(self, partitions: set[int]) -> set[int]:
        """The loaded partitions among these whose owner key holds another epoch than ours."""
        mine = sorted(p for p in partitions if p in self._epochs)
        if not mine:
            return set()
        owners = await self._async.mget([self._prefix(p) + ":owner" for p in mine])
        return {
            p
            for p, owner in zip(mine, owners, strict=True)
            if owner is not None and int(owner) != self._epochs[p]
        }

    async def stale_partitions(self, partitions: set[int]) -> set[int]:
        """The partitions among these that are not this worker's: not loaded here (given up, or
        dropped by a fence), or loaded by another worker since this one did (each dropped here;
        the next rebalance loads it again if it is still this worker's)."""
        stale = await self._taken_since(partitions)
        for partition in stale:
            self._fenced(partition, len(self._dirty.get(partition, {})))
        return stale | {p for p in partitions if p not in self._epochs}

    def owner_epochs(self, partitions: set[int]) -> dict[str, int]:
        """``{owner key: epoch}`` of these partitions, for writes fenced like the flush (the
        tally's standings): a partition not loaded here has no epoch to check."""
        return {
            self._prefix(partition) + ":owner": self._epochs[partition]
            for partition in partitions
            if partition in self._epochs
        }

    # -- flushing ----------------------------------------------------------------------
    @Service.timer(FLUSH_INTERVAL)
    async def _periodic_flush(self) -> None:
        now = time.monotonic()
        if now < self._next_attempt:
            return
        try:
            await self.flush()
        except (redis.RedisError, OSError) as exc:
            self._failures += 1
            if self._failures == 1:  # an outage begins: counted once, however long it lasts
                metrics.count_outage(exc)
            delay = min(MAX_BACKOFF, FLUSH_INTERVAL * 2**self._failures)
            self._next_attempt = now + delay
            if self._failures == 1 or self._failures % 10 == 0:
                self.log.warning(
                    "Redis unreachable, %d keys of %s wait in memory (attempt %d, next in %.1f s): %s",
                    sum(map(len, self._dirty.values())),
                    self.table_name,
                    self._failures,
                    delay,
                    exc,
                )
        else:
            if self._failures:
                self.log.warning(
                    "Redis is back after %d failed flushes of %s; state written",
                    self._failures,
                    self.table_name,
                )
            self._failures = 0
            self._next_attempt = 0.0

    async def flush(self) -> None:
        """Write dirty keys and acknowledged changelog offsets, one transaction per partition."""
        async with self._flush_lock:
            self._release_offsets()
            if not self._dirty and not self._pending_offsets:
                return
            dirty, self._dirty = self._dirty, {}
            offsets, self._pending_offsets = self._pending_offsets, {}
            owed = set(self._owed)
            began = time.perf_counter()
            try:
                for partition in sorted(set(dirty) | set(offsets)):
                    changes, offset = dirty.get(partition, {}), offsets.get(partition)
                    await self._write_partition(partition, changes, offset, partition in owed)
                metrics.STORE_FLUSH_SECONDS.observe(time.perf_counter() - began)
            except BaseException:
                # Put back what was not written; newer writes made meanwhile win.
                for partition, changes in dirty.items():
                    merged = dict(changes)
                    merged.update(self._dirty.get(partition, {}))
                    self._dirty[partition] = merged
                for partition, offset in offsets.items():
                    self._pending_offsets[partition] = max(offset, self._pending_offsets.get(partition, -1))
                raise

    def _release_offsets(self) -> None:
        """Partitions whose standings are back: their withheld offset goes in with all their data
        (Redis may have lost some of it meanwhile, and without the offset nothing could tell)."""
        for partition in self._released - set(self._owed):
            offset = self._withheld.pop(partition, None)
            if offset is not None:
                self._pending_offsets[partition] = max(offset, self._pending_offsets.get(partition, -1))
            changes = self._dirty.setdefault(partition, {})
            for key, p in self._partition_of.items():
                if p == partition:
                    changes[key] = self._values[key]
        self._released.clear()

    async def _write_partition(
        self, partition: int, changes: dict[bytes, bytes | None], offset: int | None, owed: bool
    ) -> None:
        """One atomic script per partition: its changes and its offset, or nothing. The offset of
        a partition whose standings are owed is withheld (module docstring)."""
        must_exist = partition in self._offsets
        if partition not in self._epochs:  # given up meanwhile (``_forget``): not ours to write
            return
        if owed:  # Redis must hold no offset for it: a next owner then replays all, and owes too
            self._withhold(partition, self._offsets.pop(partition, None))
            self._withhold(partition, offset)
            offset = None
        written = await self._run_script(partition, changes, offset, must_exist, drop_offset=owed)
        if written < 0:
            self._fenced(partition, len(changes))
        elif not written:
            self.log.error(
                "Redis lost %s partition %d (restarted without persistence?): writing it again from "
                "memory, without its offset until its standings are written again",
                self.table_name,
                partition,
            )
            everything: dict[bytes, bytes | None] = {
                key: self._values[key] for key, p in self._partition_of.items() if p == partition
            }
            self._withhold(partition, self._offsets.pop(partition, None))
            self._withhold(partition, offset)
            self._owe(partition)
            if await self._run_script(partition, everything, None, must_exist=False, drop_offset=True) < 0:
                self._fenced(partition, len(everything))
        elif offset is not None:
            self._offsets[partition] = offset

    def _fenced(self, partition: int, keys: int) -> None:
        """Another worker loaded the partition since ours: this one lost it without knowing
        (paused past its session timeout), and what it has of it is stale."""
        metrics.FENCED_WRITES.labels("store").inc()
        self.log.error(
            "fenced: another worker owns %s partition %d now (our owner epoch %d is stale); "
            "%d keys not written, the partition is dropped here",
            self.table_name,
            partition,
            self._epochs.get(partition, 0),
            keys,
        )
        self._forget(partition)

    async def _run_script(
        self,
        partition: int,
        changes: dict[bytes, bytes | None],
        offset: int | None,
        must_exist: bool,
        drop_offset: bool = False,
    ) -> int:
        """1 written, 0 Redis lost the partition (nothing written), -1 fenced (nothing written)."""
        prefix = self._prefix(partition)
        sets = [(k, v) for k, v in changes.items() if v is not None]
        deletes = [k for k, v in changes.items() if v is None]
        offset_arg = "-" if drop_offset else "" if offset is None else str(offset)
        args: list[Any] = ["1" if must_exist else "0", offset_arg, self._epochs[partition], len(sets)]
        for key, value in sets:
            args += (key, value)
        args += deletes
        keys = [prefix + ":data", prefix + ":offset", prefix + ":owner"]
        return int(await self._flush_script(keys=keys, args=args))

    async def on_stop(self) -> None:
        try:
            await self.flush()
        finally:
            await self._async.aclose()
