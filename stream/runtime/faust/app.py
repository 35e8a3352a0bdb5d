"""``SoireeApp``: ``faust.App`` with this package's consumer (and an idempotent producer),
started only on the pinned versions.

The consumer is installed through the transport (``_Transport``), the one place ``faust.App``
takes it from; ``TableManager=SeekFirstTableManager`` and ``Monitor=QuietMonitor`` are
``faust.App`` settings, passed by ``stream.runtime.app.create_app``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from .consumer import _Consumer
from .versions import check_versions

__all__ = ["SoireeApp"]


class _Producer(faust_aiokafka.Producer):
    """Faust's producer, idempotent: a batch retried after a lost acknowledgement (a broker
    failing over) is not written twice to the changelog or the internal topics."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Producer = _Producer


class SoireeApp(faust.App):
    """``faust.App`` with this package's consumer; pass ``TableManager=SeekFirstTableManager`` and
    ``Monitor=QuietMonitor`` too. Refuses to be built on other versions than the patches were
    written for (``versions.check_versions`` raises ``FaustVersionMismatch``)."""

    #: topics whose streams receive ``Bundle`` s: an event's value is a tuple of records
    bundled_topics: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_versions()  # before anything of Faust runs: a mismatch may skip records silently
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:  # Faust's, with _Transport whatever the broker URL's scheme
        return _Transport(self.conf.broker_consumer, self)
