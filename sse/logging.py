"""Keep tokens out of logs (``sse._process.log_masking``): the filter for a
project's ``LOGGING``, ``{"()": "sse.logging.MaskTokensFilter"}``."""

from ._process.log_masking import MaskTokensFilter, mask

__all__ = ["MaskTokensFilter", "mask"]
