"""Where Soirée departs from faust-streaming 0.15.3: four fixes and three shortcuts.

**Records skipped when partitions move between workers.** Two flaws let records through while
Faust means its stream partitions to be paused, and those records move Faust's read offsets
forward; records at or below a read offset are dropped as already seen, so the ones aiokafka
fetches again after the seek to the committed offsets are never processed, and their offsets
are acknowledged with the next ones. Found in the two-worker takeover test (a bureau's
correction lost, or a taken-over partition no longer processed at all; docs/reliability.md).

1. At the end of a rebalance, ``Recovery`` resumes the stream partitions *before* seeking them
   to their committed offsets (a round trip per partition, 0.1-0.2 s): records fetched from the
   old positions are still being delivered when the seek resets the read offsets.
   ``SeekFirstRecovery`` seeks first and resumes after, with no ``await`` between the resume and
   the emptying of the stream buffers.
2. Faust asks aiokafka for "the records of these active partitions", and aiokafka reads an
   *empty* set as "every partition": while all of them are paused (during that seek, or a
   recovery with nothing to restore), it hands over the paused ones too. ``_LivePartitions``
   is never empty to aiokafka.

**A race per record.** Faust hands each record to its streams racing the delivery against the
consumer's "suspend flow" event, two tasks and an ``asyncio.wait`` per record, so that a
delivery stuck on a full stream buffer is dropped when a rebalance starts. ``_Consumer``
delivers directly when nothing in the delivery can wait (``_DeliveryCheck``), and races
otherwise. The 2017 night: 26.9 s -> 22.2 s, worker CPU 25.6 s -> 20.0 s (docs/performance.md).

**A delivery per record.** Faust hands every record to its streams as a message of its own:
an event, stream bookkeeping and an acknowledgement each (a counting agent: 68 µs of CPU a
record). For the
topics in ``SoireeApp.bundled_topics``, ``_Consumer`` hands the records of one partition from one
fetch over as one ``Bundle``; acknowledging the bundle acknowledges each record, so Faust's
offsets and commits are untouched. The 2017 night's worker CPU: 18.6-22.4 s -> 13.0-16.7 s.

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

**Statistics nobody reads.** Faust's ``Monitor`` times and counts every message and event for
its web pages, which Soirée does not serve; ``QuietMonitor`` keeps its other figures.

Everything else is Faust's code, copied unchanged where a method had to be replaced;
``SoireeApp`` installs the consumer; pass ``TableManager=SeekFirstTableManager`` and
``Monitor=QuietMonitor`` to it (``app.create_app`` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import faust
from faust.sensors import Monitor, Sensor
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage

__all__ = ["SoireeApp", "SeekFirstRecovery", "SeekFirstTableManager", "QuietMonitor", "Bundle"]


class SeekFirstRecovery(Recovery):
    """``Recovery`` whose stream partitions are resumed only once they are at their committed offsets."""

    async def _seek_then_resume(self) -> None:
        consumer = self.app.consumer
        if consumer.assignment():
            self.log.info("Seek stream partitions to committed offsets (before resuming them).")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        consumer.resume_partitions({tp for tp in consumer.assignment() if not self._is_changelog_tp(tp)})

    async def _resume_streams(self, generation_id: int = 0) -> None:  # Faust's, reordered
        app = self.app
        consumer = app.consumer
        await app.on_rebalance_complete.send()
        if app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        if not consumer.assignment():
            self.log.info("Resuming streams with empty assignment")
        await self._seek_then_resume()
        self.completed.set()
        self.log.info("Resuming flow...")
        app.flow_control.resume()  # empties the stream buffers: nothing was delivered since the seek
        consumer.resume_flow()
        await cast(Any, app)._fetcher.maybe_start()
        self.tables.on_actives_ready()
        self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    async def on_recovery_completed(self, generation_id: int = 0) -> None:  # Faust's, reordered
        consumer = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(
                f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}"
            )
            return
        await self._seek_then_resume()
        self.completed.set()
        self.app.flow_control.resume()  # empties the stream buffers: nothing was delivered since the seek
        consumer.resume_flow()
        await cast(Any, self.app)._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")


class SeekFirstTableManager(TableManager):
    """Faust's table manager with ``SeekFirstRecovery`` (set as the app's ``TableManager``)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


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
            consumer, _LivePartitions(active_partitions), timeout, max_records
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
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
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
        bundled_topics = cast(SoireeApp, self.app).bundled_topics
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


class Bundle(ConsumerMessage):
    """The records of one partition from one fetch, as one message; ``value`` is their tuple.

    It carries the last record's offset. Acknowledging it acknowledges every record, so Faust
    commits exactly what it would have committed had the records come one by one."""

    @classmethod
    def of(cls, tp: TP, records: list[Message]) -> Bundle:
        last = records[-1]
        return cls(
            last.topic,
            last.partition,
            last.offset,
            last.timestamp,
            last.timestamp_type,
            None,
            None,
            tuple(records),
            None,
            0,
            sum(record.serialized_value_size for record in records),
            tp,
            generation_id=last.generation_id,
        )

    def on_final_ack(self, consumer: Any) -> bool:
        records = cast(tuple[Message, ...], self.value)
        for record in records[:-1]:
            consumer.ack(record)
        records[-1].acked = True
        return bool(consumer.ack(self))  # the last record's offset, once


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
        # ``buffer.size`` reads two settings per call (2 % of a night's profile); unthreaded, it is this queue's length
        assert not app.conf.producer_threaded, "the delivery check reads the unthreaded producer's queue"
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


class QuietMonitor(Monitor):
    """Faust's monitor without its per-message and per-event statistics (Faust's web pages
    show them; Soirée runs no web server): 2-3 % of a national night's profile."""

    on_message_in = Sensor.on_message_in
    on_stream_event_in = Sensor.on_stream_event_in
    on_stream_event_out = Sensor.on_stream_event_out
    on_message_out = Sensor.on_message_out
    on_table_get = Sensor.on_table_get
    on_table_set = Sensor.on_table_set


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class SoireeApp(faust.App):
    """``faust.App`` with this module's consumer; pass ``TableManager=SeekFirstTableManager`` and
    ``Monitor=QuietMonitor`` too."""

    #: topics whose streams receive ``Bundle`` s: an event's value is a tuple of records
    bundled_topics: frozenset[str] = frozenset()

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
