"""The format's vocabulary: its keys, its error, its parsed form, and how it writes values.

Parsing, applying and exporting all build on this module; it imports nothing else of the
package, so it is where a new key or a new kind of value starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.models import Agent

Status = Agent.Status

# --- the keys -------------------------------------------------------------------------------------

TOP_KEYS = ("systems", "data_sources", "groups", "agents")
SYSTEM_KEYS = ("slug", "name", "description")
SOURCE_KEYS = ("slug", "name", "description", "approved", "maintainer", "max_age",
               "refreshed_at")
GROUP_KEYS = ("name", "members")
AGENT_KEYS = (
    "slug", "name", "description", "business_outcome", "definition_of_done", "workflow",
    "autonomy_level", "status", "paused_from", "pause_reason", "owners", "pausers",
    "reviewers", "review_groups", "review_sample_rate", "confidence", "max_writes_per_hour",
    "monthly_cost_budget", "review_cadence", "access", "sources", "guardrails", "rollback",
)
OWNER_ROLES = ("business", "process", "technical")
CONFIDENCE_KEYS = ("review_below", "block_below")
GUARDRAIL_KEYS = ("name", "system", "operation", "field", "operator", "value", "effect",
                  "route_to_group")
ROLLBACK_KEYS = ("title", "instructions")

# The lifecycle order the YAML status walks along.
STATUS_LADDER = (Status.PROPOSED, Status.PILOT, Status.LIVE)


class RegistryError(Exception):
    """The file is wrong or a service refused it; `messages` name the entry and the field."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("\n".join(messages))


@dataclass
class Registry:
    """A validated file, normalised: usernames, slugs and group names, defaults filled in."""

    systems: list[dict] = field(default_factory=list)
    data_sources: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    agents: list[dict] = field(default_factory=list)


# --- durations and timestamps ---------------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str) -> timedelta | None:
    """`7d`, `12h`, `30m`, `45s` or a combination such as `1d12h`; None if it is not one."""
    match = _DURATION.fullmatch(text.strip())
    if not match or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_duration(value: timedelta) -> str:
    total, parts = int(value.total_seconds()), []
    for unit, size in _DURATION_UNITS:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- values in change lines and messages ----------------------------------------------------------

_PLAIN = re.compile(r"[\w.@+-]+")


def show_value(value: Any) -> str:
    """A value as a change line shows it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, list):
        return "[" + ", ".join(show_value(item) for item in value) + "]"
    if isinstance(value, str):
        if _PLAIN.fullmatch(value):  # slugs, usernames, statuses read best bare
            return value
        one_line = " ".join(value.split())
        return repr(one_line if len(one_line) <= 60 else one_line[:59] + "…")
    return str(value)
