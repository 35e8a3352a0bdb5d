"""Faust's aiokafka consumer, with two fetch fixes, a fix for paused partitions, a direct delivery
and bundles.

**Paused partitions handed over anyway** (the second of the two flaws in this package's
overview). Faust asks aiokafka for "the records of these active partitions", and aiokafka reads
an *empty* set as "every partition": while all of them are paused (during the seek at the end
of a rebalance, or a recovery with nothing to restore), it hands over the paused ones too.
``_LivePartitions`` is never empty to aiokafka.

**A race per record.** Faust hands each record to its streams racing the delivery against the
consumer's "suspend flow" event, two tasks and an ``asyncio.wait`` per record, so that a
delivery stuck on a full stream buffer is dropped when a rebalance starts. ``_Consumer``
delivers directly when nothing in the delivery can wait (``_DeliveryCheck``), and races
otherwise. The 2017 night: 26.9 s -> 22.2 s, worker CPU 25.6 s -> 20.0 s (docs/performance.md).

**A delivery per record.** For the topics in ``SoireeApp.bundled_topics``, ``_Consumer`` hands
the records of one partition from one fetch over as one ``bundle.Bundle``.

**Fetches held back by records nobody reads.** aiokafka sends no fetch to a broker while
records it fetched for any partition there are unread and less than 0.1 s old
(``prefetch_backoff``). Faust "pauses" partitions by leaving them out of what it reads, not in
aiokafka, which keeps fetching them: an active worker never reads its table's changelog, yet
the first record written to each changelog partition was fetched, and on a single broker each
stopped all fetching for 0.1 s: the first seconds of a night waited 0.1-0.3 s, the latency
bench's whole p99. ``_ConsumerThread`` pauses in aiokafka the changelog partitions Faust does
not read (and resumes them when it reads them again, to recover a table).

**Takeovers waiting on idle fetches.** Faust has the broker hold a fetch with nothing to return
for up to 1.5 s, and aiokafka sends nothing more to that broker meanwhile: at a takeover, the
changelog partitions resumed to recover the table waited for the fetch in flight, twice, and
the table recovery after a kill -9 took 3.2 s instead of 0.6 s. ``FETCH_MAX_WAIT_MS`` is 200.

``_Consumer._drain_messages`` and ``_new_consumer_thread`` are Faust's, copied and modified
(``versions.COPIED``); ``_DeliveryCheck`` restates the conditions under which Faust's delivery
waits (``versions.ASSUMED``).
"""

# Extending Faust and aiokafka means reaching into their private members.

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from .bundle import Bundle

if TYPE_CHECKING:
    from .app import SoireeApp

__all__ = ["FETCH_MAX_WAIT_MS"]


class _LivePartitions:
    """Faust's set of active partitions (changed in place as partitions pause and resume), as
    aiokafka reads it at every wake-up, except that it is never empty: aiokafka takes an empty
    set for "every partition"."""

    __slots__ = ("_live",)

    def __init__(self, live: Any) -> None:
        self._live = live

    def __contains__(self, tp: object) -> bool:
        return tp in self._live

    def __bool__(self) -> bool:
        return True


#: Longest a fetch with nothing to return is held by the broker (Faust: 1,500 ms). Partitions
#: resumed while one is in flight (a table's changelog at a takeover) wait for it to come back.
FETCH_MAX_WAIT_MS = 200


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # given to its fetcher when it starts
        return consumer

    async def _fetch_records(
        self, consumer: Any, active_partitions: Any, timeout: Any = None, max_records: Any = None
    ) -> Any:
        self._pause_unread_changelogs(consumer, active_partitions)
        return await super()._fetch_records(
            consumer,
            _LivePartitions(active_partitions),  # type: ignore[arg-type]  # a set to aiokafka
            timeout,
            max_records,
        )

    def _pause_unread_changelogs(self, consumer: Any, active_partitions: Any) -> None:
        """Pause in aiokafka the changelog partitions Faust leaves out of what it reads, resume
        those it reads again. Faust pauses nothing in aiokafka itself, so aiokafka's paused set
        (which a rebalance resets) is exactly what this paused."""
        changelogs = self.app.tables.changelog_topics
        unread = {
            tp for tp in consumer.assignment() if tp.topic in changelogs and tp not in active_partitions
        }
        paused = consumer.paused()
        if unread != paused:
            consumer.resume(*(paused - unread))
            consumer.pause(*(unread - paused))


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:  # Faust's, class swapped
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # Faust's, with the direct delivery and bundles
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        bundled_topics = cast("SoireeApp", self.app).bundled_topics
        can_deliver_now = _DeliveryCheck(self)
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        async def deliver(tp: TP, message: Message) -> None:
            if can_deliver_now(tp):
                await callback(message)  # nothing in it can wait: see _DeliveryCheck
            else:
                await self.wait_first(callback(message), self.suspend_flow.wait())

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator, getmany(timeout=1.0))
                await self.sleep(0)
                if not self.should_stop:
                    bundles: dict[TP, list[Message]] = {}
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        bundle = bundles.get(tp) if tp.topic in bundled_topics else None
                        r_offset = bundle[-1].offset if bundle else get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset:
                                if acks_enabled_for(message.topic):
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            if tp.topic in bundled_topics:
                                bundles.setdefault(tp, []).append(message)
                                continue
                            await deliver(tp, message)
                            set_read_offset(tp, offset)
                    for tp, records in bundles.items():
                        if (
                            not self.flow_active
                            or records[-1].generation_id != self.app.consumer_generation_id
                        ):
                            break  # a rebalance began: fetched again after the seek that ends it
                        await deliver(tp, Bundle.of(tp, records))
                        set_read_offset(tp, records[-1].offset)
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class _DeliveryCheck:
    """Whether handing a record to its streams can complete without waiting.

    Faust races each delivery against the consumer's "suspend flow" event (two tasks and an
    ``asyncio.wait`` per record, a third of a worker's time on a national night) so that a
    delivery blocked on a full stream buffer is abandoned when a rebalance starts. The
    conductor's ``on_message`` waits only when: the flow is suspended, the producer's buffer is
    over its limit, the partition-to-callback lock is held, or a stream buffer of the
    partition is full. When none holds, it completes without yielding, and the race is moot."""

    def __init__(self, consumer: Any) -> None:
        app = consumer.app
        self._suspended = consumer.suspend_flow.is_set
        self._flow_control_suspended = app.flow_control._suspend.is_set
        buffer = app.producer.buffer
        # ``buffer.size`` reads two settings per call (2 % of a night's profile); unthreaded,
        # it is the length of this queue
        if app.conf.producer_threaded:
            raise RuntimeError("the delivery check reads the unthreaded producer's queue")
        self._producer_pending = buffer.pending.qsize
        self._producer_limit = buffer.max_messages
        self._conductor = app.topics
        self._lock_held = app.topics._tp_to_callback_lock.locked

    def __call__(self, tp: Any) -> bool:
        if (
            self._suspended()
            or self._flow_control_suspended()
            or self._lock_held()
            or self._producer_pending() > self._producer_limit
        ):
            return False
        channels = self._conductor._tp_index.get(tp)
        return bool(channels) and not any(channel.queue.full() for channel in channels)
