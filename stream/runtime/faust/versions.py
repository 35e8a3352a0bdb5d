"""The versions this package was written for, and hashes of the upstream code it copies or assumes.

Every module here reaches into faust-streaming, mode-streaming and aiokafka as they are at the
``PINNED`` versions: methods copied and modified, private attributes, behaviours restated.
Another version can break them without raising anything (records skipped at a takeover, say),
so a worker refuses to start on other versions (``check_versions``, called by ``SoireeApp``),
and tests/test_faust_drift.py recomputes the hashes below from the installed packages: after a
version bump, each mismatch names upstream code to re-read and carry over to ours.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import textwrap
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Final

from stream.errors import FaustVersionMismatch

__all__ = ["PINNED", "COPIED", "ASSUMED", "check_versions", "source_hash", "upstream"]

#: The distributions the patches were written and tested against (pyproject.toml pins the same).
PINNED: Final[Mapping[str, str]] = {
    "faust-streaming": "0.15.3",
    "mode-streaming": "0.7.1",
    "aiokafka": "0.14.0",
}

#: Upstream methods we replace with a modified copy of their body: an upstream fix to one of
#: them is lost until it is carried over to our copy. Dotted path -> ``source_hash``.
COPIED: Final[Mapping[str, str]] = {
    # recovery.SeekFirstRecovery: the same steps, seeking before resuming
    "faust.tables.recovery.Recovery._resume_streams": (
        "fbe0f747b84c0b2743bc83626a6836c0b1ffc3b1e3b3ac0073eb13552fd44c75"
    ),
    "faust.tables.recovery.Recovery.on_recovery_completed": (
        "895e7c415a4d137997ea0e6c04f0c180d3c783cd6ef18a977a14338ca1073b59"
    ),
    # recovery.SeekFirstTableManager: builds SeekFirstRecovery instead of Recovery
    "faust.tables.manager.TableManager.recovery": (
        "9e5e10447444e1dfc5682dde497b598ebf565708ff09cdfca408e1369280dd3e"
    ),
    # consumer._Consumer: the fetch loop, with the direct delivery and bundles
    "faust.transport.consumer.Consumer._drain_messages": (
        "8f35dd7a11144daa6ec9a3739a497b03a9dd6b57cca18aa861bb4a549400fc68"
    ),
    # consumer._Consumer: builds _ConsumerThread instead of AIOKafkaConsumerThread
    "faust.transport.drivers.aiokafka.Consumer._new_consumer_thread": (
        "8fd0d41b15145615ef63e559b5dbd062f527d9f4800842b07d8b30d81372eedc"
    ),
    # app.SoireeApp: builds _Transport instead of the transport named by the broker URL
    "faust.app.base.App._new_transport": "11beddacb9fee5b09032ba1f29d48e0cd7c8334853f721f3ea6426a5d7ba2511",
    # bundle.Bundle: acknowledges each record, then itself as ConsumerMessage does
    "faust.types.tuples.ConsumerMessage.on_final_ack": (
        "818bf19da0010b2e1fdf5b4f97fa83c04bcbc28d4641ba83803ce498b0a5c188"
    ),
}

#: Upstream code whose behaviour a patch assumes without calling it (it restates its conditions,
#: replaces it with nothing, or feeds it something it must accept): a change there can make the
#: patch wrong without an error. Dotted path -> ``source_hash``.
ASSUMED: Final[Mapping[str, str]] = {
    # table_writes.write_under_event: the stores read a write's partition from current_event(),
    # which returns what the private _current_event variable holds (a weak reference)
    "faust.streams.current_event": "3b821f1a78d86a58234dfe781fbf539775b00e66fdac9489c1c398a2d81d7e9d",
    # consumer._DeliveryCheck: a delivery waits only for flow control, the producer's buffer,
    # the partition-to-callback lock and a full stream buffer, each as read there
    "faust.transport.conductor.ConductorCompiler.build": (
        "70ded0e719100a3f47b1d142b93a1181d6142fbc472db9abf0c3c45da71b93c4"
    ),
    "faust.transport.conductor.Conductor._compile_message_handler": (
        "86322d3c79430290bd7577c9dab4963a5314cbd51525dd221b884b420682ecbe"
    ),
    "mode.utils.queues.FlowControlEvent.acquire": (
        "6539766d87ac12cbd4c031c19d3f8edbba224fcb4c47e136a471526195f3ee47"
    ),
    "faust.transport.producer.ProducerBuffer.wait_until_ebb": (
        "191a87d5d9c664673e995fcdac961a3afe34bd22f2dbc2247817cf2910991e1a"
    ),
    "faust.transport.producer.ProducerBuffer.size": (
        "4cf1044f773f41a5ba641433bd1571340b8616e58defb8757ded18a03071d97f"
    ),
    # consumer._LivePartitions: Faust passes the active partitions through untouched, and
    # aiokafka only tests them for truth and membership (an empty set meaning every partition)
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._fetch_records": (
        "9e7369fc572de4d0a2747de8690cf28587dddac36dde6f619cbd5fb85d94cfb9"
    ),
    "aiokafka.consumer.fetcher.Fetcher.fetched_records": (
        "e20ce0c8117f12d2b408eb402197520734d7fb4bc94face9f99c4c5832e23339"
    ),
    # consumer._ConsumerThread: ``_fetch_max_wait_ms``, set after __init__, reaches the fetcher
    "aiokafka.consumer.consumer.AIOKafkaConsumer.start": (
        "5ba1baa38f6246a034cb8dca6982f731c260ababd7ca2a7cdb93685579ec09e3"
    ),
    # bundle.Bundle.of: Message's parameters, passed by position
    "faust.types.tuples.Message.__init__": "34616bad2796e4c6fe5027364c2ac96321cee3ab24898d486fd1569510eca585",
    # monitor.QuietMonitor: these only gather statistics, so they can do nothing instead
    "faust.sensors.monitor.Monitor.on_message_in": (
        "a2ed6a359743782a1bf3b78520b441ed387856b8b2aff49c41325cb083e0183e"
    ),
    "faust.sensors.monitor.Monitor.on_stream_event_in": (
        "de452defd9dad12eb30785e8c2bffe78e5cd6fde4edb52943a53188dd4812e69"
    ),
    "faust.sensors.monitor.Monitor.on_stream_event_out": (
        "dd7e69014a8edac256070533b7365e3a58649a0f3bad0f7895c800a7c09955bd"
    ),
    "faust.sensors.monitor.Monitor.on_message_out": (
        "ae62eaec781dec8098e7f52a4ae672d9e7956757372098ee795b8e2a20f1d302"
    ),
    "faust.sensors.monitor.Monitor.on_table_get": (
        "b068ebdbc4afb8841bd92148e22d8bcf20545d4c3726cb354ad2cce9725aba9f"
    ),
    "faust.sensors.monitor.Monitor.on_table_set": (
        "497fc36266366787b429bfc34a3489dd931d61f6e33e6df7a3f884ac62232109"
    ),
}


def check_versions() -> None:
    """Raise ``FaustVersionMismatch`` unless the installed versions are the ``PINNED`` ones."""
    found: dict[str, str] = {}
    for name in PINNED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "none"
    wrong = [
        f"{name} {found[name]} (pinned {pinned})" for name, pinned in PINNED.items() if found[name] != pinned
    ]
    if wrong:
        raise FaustVersionMismatch(
            f"Soirée's Faust patches were written for other versions: found {', '.join(wrong)}. "
            "Reinstall with the project's pins (pip install -e . in a fresh virtualenv), or, to move to "
            "these versions, re-check each patch in stream/runtime/faust against them, then update "
            "PINNED and the hashes in stream/runtime/faust/versions.py (tests/test_faust_drift.py "
            "names the upstream code that changed)."
        )


def source_hash(obj: object) -> str:
    """sha256 of ``obj``'s source, dedented (a method hashes the same wherever it is nested)."""
    return hashlib.sha256(textwrap.dedent(inspect.getsource(obj)).encode()).hexdigest()  # type: ignore[arg-type]


def upstream(path: str) -> object:
    """The function at a dotted path such as ``package.module.Class.method`` (a property's getter)."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj.fget if isinstance(obj, property) else obj
    raise ModuleNotFoundError(f"no module in {path!r}")
