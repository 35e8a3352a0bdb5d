"""``app.RawSchema``: the agents' topics hand Kafka's bytes to the agents as they came."""

from __future__ import annotations

import asyncio

import faust
from faust.types import Message

from stream.runtime.app import create_app
from stream.runtime.faust import RawSchema
from stream.settings import Settings


def test_raw_schema_events_carry_kafkas_bytes() -> None:
    app = faust.App("raw-schema-test", broker="kafka://localhost:1", autodiscover=False)
    decode = RawSchema().compile(app)
    message = Message("bureau-results", 2, 41, 0.0, 0, [("h", b"1")], b"75056_0001", b'{"x": 1}', None)
    event = asyncio.run(decode(message))
    assert (event.key, event.value, event.message, event.app) == (b"75056_0001", b'{"x": 1}', message, app)
    assert event.headers == {"h": b"1"}


def test_every_agent_topic_uses_the_raw_schema(services: Settings) -> None:
    settings = services.model_copy(update={"app_id": "raw-schema-wiring", "store": "memory://"})
    app = create_app(settings)  # sets its marker in Redis: needs the services
    topics = [agent.channel for agent in app.agents.values()]
    assert len(topics) == 3 and all(isinstance(topic.schema, RawSchema) for topic in topics)
