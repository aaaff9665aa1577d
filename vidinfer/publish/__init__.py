"""Results on ZeroMQ: the wire format, the publisher, and a subscriber client."""

from vidinfer.publish.publisher import Publisher
from vidinfer.publish.subscriber import Message, Subscriber
from vidinfer.publish.wire import SCHEMA_VERSION, Kind

__all__ = ["Publisher", "Subscriber", "Message", "Kind", "SCHEMA_VERSION"]
