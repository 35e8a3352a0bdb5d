"""Where Soirée departs from faust-streaming 0.15.3: four fixes and four shortcuts, a module each.

**Records skipped when partitions move between workers.** Two flaws let records through while
Faust means its stream partitions to be paused, and those records move Faust's read offsets
forward; records at or below a read offset are dropped as already seen, so the ones aiokafka
fetches again after the seek to the committed offsets are never processed, and their offsets
are acknowledged with the next ones. Found in the two-worker takeover test (a bureau's
correction lost, or a taken-over partition no longer processed at all; docs/reliability.md).

1. ``recovery``: at the end of a rebalance, ``Recovery`` resumes the stream partitions before
   seeking them; ``SeekFirstRecovery`` (installed by ``SeekFirstTableManager``) seeks first.
2. ``consumer``: aiokafka reads an empty set of active partitions as "every partition", and
   hands over paused ones; ``_LivePartitions`` is never empty to aiokafka.

**Fetches held back** (``consumer``): by records fetched for changelog partitions nobody reads
(``_ConsumerThread`` pauses them in aiokafka), and by idle fetches the broker holds for 1.5 s
(``FETCH_MAX_WAIT_MS``).

**Shortcuts**, for CPU: a direct delivery instead of a race per record (``consumer``), the
records of a partition's fetch as one message (``bundle.Bundle``), no per-message statistics
(``monitor.QuietMonitor``), keys and values left as Kafka's bytes (``schema.RawSchema``), a
chunk's messages as aiokafka record batches (``outbox.Outbox``), and table writes made under the
event that gives their partition, so that a whole chunk's changelog records go out at once
(``table_writes``).

``app.SoireeApp`` installs the consumer, and refuses to start on other versions than
``versions.PINNED``; pass ``TableManager=SeekFirstTableManager`` and ``Monitor=QuietMonitor`` to
it (``stream.runtime.app.create_app`` does). Everything else is Faust's code, copied where a
method had to be replaced: ``versions.COPIED`` lists those methods, and ``versions.ASSUMED``
the upstream code the patches restate, each with a hash of its source that
tests/test_faust_drift.py checks against the installed packages.
"""

from __future__ import annotations

from .app import SoireeApp
from .bundle import Bundle
from .monitor import QuietMonitor
from .recovery import SeekFirstTableManager
from .schema import RawSchema

__all__ = ["SoireeApp", "SeekFirstTableManager", "QuietMonitor", "Bundle", "RawSchema"]
