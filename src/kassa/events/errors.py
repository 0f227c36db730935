"""Typed failures of the event backbone.

KassaError
├── NotFound
│   ├── ConsumerNotFound        consumer_not_found
│   └── DeadLetterNotFound      dead_letter_not_found
├── InvalidRequest
│   └── SchemaIncompatible      schema_incompatible
└── ServiceUnavailable
    └── EventBusUnavailable     event_bus_unavailable
"""

from __future__ import annotations

from kassa.shared.errors import InvalidRequest, NotFound, ServiceUnavailable


class ConsumerNotFound(NotFound):
    code = "consumer_not_found"
    title = "No consumer is registered under this name"


class DeadLetterNotFound(NotFound):
    code = "dead_letter_not_found"
    title = "No open dead letter has this id"


class SchemaIncompatible(InvalidRequest):
    code = "schema_incompatible"
    title = "An event schema changed in a backward-incompatible way"


class EventBusUnavailable(ServiceUnavailable):
    code = "event_bus_unavailable"
    title = "The event stream is not reachable"
