"""The render daemon, its msgpack-over-ZeroMQ protocol and the Python client."""
