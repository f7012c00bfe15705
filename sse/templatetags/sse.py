"""``{% load sse %}{% sse_config %}``: where the project mounted the apps, for
the JS client (``AgentSSEClient`` reads it when no ``apiBase`` is given)."""

from __future__ import annotations

from django import template
from django.utils.html import json_script
from django.utils.safestring import SafeString

from ..urls import api_base

register = template.Library()


@register.simple_tag
def sse_config() -> SafeString:
    """``<script type="application/json" id="sse-config">{"apiBase": ...}</script>``"""
    return json_script({"apiBase": api_base()}, "sse-config")
