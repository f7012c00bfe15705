"""Deciding some requests before a person is asked.

``PERMISSIONS["POLICY"]`` names a callable ``(PolicyRequest) -> PolicyDecision
| None``; None asks a person.  It runs in the agent's process, in a thread
where the ORM may be used.  The audit records it as ``policy:<dotted path>``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils.module_loading import import_string

from .conf import conf

logger = logging.getLogger(__name__)

READ_ONLY_PREFIXES = ("read_", "get_", "list_", "search_")


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """What a policy may look at: the request about to be made."""

    session_id: str
    tool_name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # The session's owner, or None when the session has no owner record.
    user: Any = None


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """A policy's answer: approve or deny, and why (shown to people)."""

    approved: bool
    reason: str = ""


Policy = Callable[[PolicyRequest], "PolicyDecision | None"]


def allow_read_only(request: PolicyRequest) -> PolicyDecision | None:
    """Approve tools named as reads (``read_``, ``get_``, ``list_``, ``search_``);
    ask a person about everything else."""
    if request.tool_name.startswith(READ_ONLY_PREFIXES):
        return PolicyDecision(True, "Read-only tool, approved by policy.")
    return None


def evaluate(request: PolicyRequest) -> tuple[PolicyDecision, str] | None:
    """The configured policy's decision and its audit rule, or None to ask a person.

    A policy that fails is logged and a person is asked: failing towards a
    question is safe, failing towards an answer is not.
    """
    path = conf.POLICY
    if path is None:
        return None
    try:
        policy: Policy = import_string(path)
        # Typed as the contract says, checked as code may break it.
        decision: object = policy(request)
    except Exception:
        logger.exception("Permission policy %s failed; asking a person", path)
        return None
    if decision is None:
        return None
    if not isinstance(decision, PolicyDecision):
        logger.error(
            "Permission policy %s returned %r, not a PolicyDecision or None; asking a person",
            path,
            decision,
        )
        return None
    return decision, f"policy:{path}"
