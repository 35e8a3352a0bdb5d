"""Stream partitions resumed only once they are at their committed offsets.

At the end of a rebalance, Faust's ``Recovery`` resumes the stream partitions *before* seeking
them to their committed offsets (a round trip per partition, 0.1-0.2 s): records fetched from
the old positions are still being delivered when the seek resets the read offsets, and they
move those read offsets forward, so the records aiokafka fetches again after the seek are
dropped as already seen (the first of the two flaws in this package's overview).
``SeekFirstRecovery`` seeks first and resumes after, with no ``await`` between the resume and
the emptying of the stream buffers. Its two methods are Faust's, copied and reordered
(``versions.COPIED``).
"""

# Extending Faust means reaching into its private members.

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery

__all__ = ["SeekFirstRecovery", "SeekFirstTableManager"]


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
    def recovery(self) -> Recovery:  # Faust's, with the class swapped
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
