"""Fixes for faust-streaming 0.15.3: records skipped when partitions move between workers.

Two flaws let records through while Faust means its stream partitions to be paused, and those
records move Faust's read offsets forward; records at or below a read offset are dropped as
already seen, so the ones aiokafka fetches again after the seek to the committed offsets are
never processed, and their offsets are acknowledged with the next ones. Found in the two-worker
takeover test (a bureau's correction lost, or a taken-over partition no longer processed at
all: every record dropped; docs/reliability.md).

1. At the end of a rebalance, ``Recovery`` resumes the stream partitions *before* seeking them
   to their committed offsets (a round trip per partition, 0.1-0.2 s): records fetched from the
   old positions are still being delivered when the seek resets the read offsets.
   ``SeekFirstRecovery`` seeks first and resumes after, with no ``await`` between the resume and
   the emptying of the stream buffers.
2. Faust asks aiokafka for "the records of these active partitions", and aiokafka reads an
   *empty* set as "every partition": while all of them are paused (during that seek, or a
   recovery with nothing to restore), it hands over the paused ones too. ``_LivePartitions``
   is never empty to aiokafka.

The rest is Faust's code, unchanged; ``SoireeApp`` installs both.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["SoireeApp", "SeekFirstRecovery", "SeekFirstTableManager"]


class SeekFirstRecovery(Recovery):
    """``Recovery`` whose stream partitions are resumed only once they are at their committed offsets."""

    async def _seek_then_resume(self) -> None:
        consumer = self.app.consumer
        assignment = consumer.assignment()
        if assignment:
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
        if consumer.assignment():
            await self._seek_then_resume()
        else:
            self.log.info("Resuming streams with empty assignment")
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
        await asyncio.gather(
            *(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
                for table in self.tables.values()
            )
        )
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


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def _fetch_records(self, consumer: Any, active_partitions: Any, timeout: Any = None, max_records: Any = None) -> Any:
        return await super()._fetch_records(consumer, _LivePartitions(active_partitions), timeout, max_records)


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class SoireeApp(faust.App):
    """``faust.App`` with both fixes: pass ``TableManager=SeekFirstTableManager`` too."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
