"""Server-Sent Events for agent backends: streams, brokers, replay, notifier.

Publish from agent code with ``from sse import notifier``.
"""
