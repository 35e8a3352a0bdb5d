"""Faust's monitor without the statistics nobody reads.

Faust's ``Monitor`` times and counts every message and event for its web pages, which Soirée
does not serve; ``QuietMonitor`` keeps its other figures.
"""

from __future__ import annotations

from faust.sensors import Monitor, Sensor

__all__ = ["QuietMonitor"]


class QuietMonitor(Monitor):
    """Faust's monitor without its per-message and per-event statistics (Faust's web pages
    show them; Soirée runs no web server): 2-3 % of a national night's profile."""

    on_message_in = Sensor.on_message_in
    on_stream_event_in = Sensor.on_stream_event_in
    on_stream_event_out = Sensor.on_stream_event_out
    on_message_out = Sensor.on_message_out
    on_table_get = Sensor.on_table_get
    on_table_set = Sensor.on_table_set
