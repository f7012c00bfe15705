"""The ASGI entry point for projects that serve many streams: in your
``asgi.py``, ``from sse.asgi import get_asgi_application`` instead of
Django's.  What it changes, and why, is in ``sse._process.asgi``."""

from ._process.asgi import THREADS, ASGIHandler, get_asgi_application

__all__ = ["THREADS", "ASGIHandler", "get_asgi_application"]
