"""Applying a parsed registry: the database brought to what the file says, through the services.

Every write is a service call, so it is permission-checked and audited like a change made in
the portal; an entry that already matches the file calls no service at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from agents import services as agent_services
from agents.models import Agent, DataSource, System
from agents.registry_yaml.format import (
    GUARDRAIL_KEYS,
    ROLLBACK_KEYS,
    STATUS_LADDER,
    Registry,
    RegistryError,
    show_value,
)
from agents.registry_yaml.state import (
    agent_with_state,
    group_state,
    guardrail_state,
    perm_holders,
    source_state,
    system_state,
)
from portal import services as portal_services

User = get_user_model()
Status = Agent.Status

# Agent settings that agent_create/agent_update write: key in the file → model field.
AGENT_SETTINGS = {
    "name": "name",
    "description": "description",
    "business_outcome": "business_outcome",
    "definition_of_done": "definition_of_done",
    "workflow": "workflow",
    "autonomy_level": "autonomy_level",
    "owners.business": "business_owner",
    "owners.process": "process_owner",
    "owners.technical": "technical_owner",
    "review_sample_rate": "review_sample_rate",
    "confidence.review_below": "confidence_review_below",
    "confidence.block_below": "confidence_block_below",
    "max_writes_per_hour": "max_writes_per_hour",
    "monthly_cost_budget": "monthly_cost_budget",
    "review_cadence": "review_cadence",
}
AGENT_FIELD_KEYS = {model: key for key, model in AGENT_SETTINGS.items()}
USER_SETTINGS = ("owners.business", "owners.process", "owners.technical")

# Reviewers hold both on the agent.
REVIEWER_PERMS = ("view_agent", "review_agent")
RETIRE_REASON = "Retired by the registry file (status: retired)."


def apply(registry: Registry, *, actor=None, dry_run: bool = False) -> list[str]:
    """Bring the database to what the file says, in one transaction; return the change lines.

    A dry run makes the very same changes and rolls them back, so what it prints is exactly
    what a real run would do, and nothing (rows, audit events, permissions) stays behind.
    """
    applier = _Applier(actor)
    with transaction.atomic():
        applier.run(registry)
        if dry_run:
            transaction.set_rollback(True)
    return applier.lines


class _Applier:
    def __init__(self, actor) -> None:
        self.actor = actor
        self.lines: list[str] = []
        self._users: dict[str, Any] = {}

    def user(self, name: str | None):
        if name is None:
            return None
        if name not in self._users:
            self._users[name] = User.objects.get(username=name)
        return self._users[name]

    @contextmanager
    def at(self, path: str, keys: dict[str, str] | None = None) -> Iterator[None]:
        """Turn a service's refusal into a message that names the entry (and the field)."""
        try:
            yield
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                raise RegistryError([f"{path}: {m}" for m in exc.messages]) from exc
            messages = []
            for name, errors in exc.message_dict.items():
                key = (keys or {}).get(name, name)
                where = path if name == NON_FIELD_ERRORS else f"{path}.{key}"
                messages += [f"{where}: {m}" for m in errors]
            raise RegistryError(messages) from exc
        except PermissionDenied as exc:
            raise RegistryError([f"{path}: permission denied: {exc}"]) from exc
        except IntegrityError as exc:
            raise RegistryError([f"{path}: the database refused the change: {exc}"]) from exc

    def changed(self, what: str, name: str, before: dict | None, after: dict,
                keys) -> list[str]:
        """Write the change lines for one entry; return the keys whose value changes."""
        if before is None:
            self.lines.append(f"+ {what} {name}")
            return list(keys)
        keys = [key for key in keys if before[key] != after[key]]
        for key in keys:
            self.lines.append(f"~ {what} {name}: {key} {show_value(before[key])} → "
                              f"{show_value(after[key])}")
        return keys

    def run(self, registry: Registry) -> None:
        for spec in registry.systems:
            self.system(spec)
        for spec in registry.data_sources:
            self.source(spec)
        for spec in registry.groups:
            self.group(spec)
        for spec in registry.agents:
            self.agent(spec)

    # systems, sources, groups: one service call each, only when something differs

    def system(self, spec: dict) -> None:
        current = System.objects.filter(slug=spec["slug"]).first()
        before = system_state(current) if current else None
        if self.changed("system", spec["slug"], before, spec, ("name", "description")):
            with self.at(f"systems[{spec['slug']}]"):
                agent_services.system_save(actor=self.actor, slug=spec["slug"],
                                           name=spec["name"], description=spec["description"])

    def source(self, spec: dict) -> None:
        current = DataSource.objects.select_related("maintainer").filter(
            slug=spec["slug"]).first()
        before = source_state(current) if current else None
        keys = ("name", "description", "approved", "maintainer", "max_age", "refreshed_at")
        if self.changed("data_source", spec["slug"], before, spec, keys):
            fields = {key: spec[key] for key in keys}
            fields["maintainer"] = self.user(spec["maintainer"])
            with self.at(f"data_sources[{spec['slug']}]"):
                agent_services.data_source_save(actor=self.actor, slug=spec["slug"], **fields)

    def group(self, spec: dict) -> None:
        current = Group.objects.filter(name=spec["name"]).first()
        before = group_state(current) if current else None
        if self.changed("group", spec["name"], before, spec, ("members",)):
            with self.at(f"groups[{spec['name']}]"):
                portal_services.group_save(actor=self.actor, name=spec["name"],
                                           members=[self.user(n) for n in spec["members"]])

    # agents

    def agent(self, spec: dict) -> None:
        slug, path = spec["slug"], f"agents[{spec['slug']}]"
        agent, before = agent_with_state(slug)
        paused_from = spec["paused_from"]
        if spec["status"] == Status.PAUSED and paused_from is None:
            # Not said: a paused agent stays paused from where it was, any other is paused
            # where it stands (a new one in proposed).
            paused_from = (before["paused_from"] if before and before["paused_from"]
                           else agent.status if agent and agent.status in STATUS_LADDER
                           else Status.PROPOSED)
        # Going down the lifecycle happens before the configuration shrinks (a live agent
        # steps back through pilot while it still has what pilot needs); going up, after.
        status_first = (agent is not None and spec["status"] != Status.RETIRED
                        and _rank(spec["status"], paused_from)
                        < _rank(agent.status, agent.status_before_pause))
        if agent is None:
            self.lines.append(f"+ agent {slug}")
            with self.at(path, AGENT_FIELD_KEYS):
                agent = agent_services.agent_create(
                    actor=self.actor, slug=slug, pausers=[self.user(n) for n in spec["pausers"]],
                    sources=list(DataSource.objects.filter(slug__in=spec["sources"])),
                    **self.agent_fields(spec, AGENT_SETTINGS))
            before = {"status": Status.PROPOSED, "paused_from": None, "pause_reason": ""}
        else:
            if status_first:
                agent = self.status(agent, spec, before, path, paused_from)
            old, new = _flat_settings(before), _flat_settings(spec)
            keys = self.changed("agent", slug, old, new, list(new))
            if keys:
                extra = {}
                if "pausers" in keys:
                    extra["pausers"] = [self.user(n) for n in spec["pausers"]]
                if "sources" in keys:
                    extra["sources"] = list(DataSource.objects.filter(slug__in=spec["sources"]))
                with self.at(path, AGENT_FIELD_KEYS):
                    agent = agent_services.agent_update(
                        actor=self.actor, agent=agent, **extra,
                        **self.agent_fields(spec, [k for k in keys if k in AGENT_SETTINGS]))
        self.accesses(agent, spec, path)
        self.guardrails(agent, spec, path)
        self.rollback(agent, spec, path)
        self.reviewers(agent, spec, path)
        if not status_first:
            self.status(agent, spec, before, path, paused_from)

    def agent_fields(self, spec: dict, keys) -> dict:
        flat = _flat_settings(spec)
        return {AGENT_SETTINGS[key]: self.user(flat[key]) if key in USER_SETTINGS else flat[key]
                for key in keys}

    def accesses(self, agent: Agent, spec: dict, path: str) -> None:
        current = {a.system.slug: a for a in agent.accesses.select_related("system")}
        for slug, access in current.items():
            if slug not in spec["access"]:
                self.lines.append(f"- access {agent.slug}/{slug}")
                with self.at(f"{path}.access"):
                    agent_services.system_access_remove(actor=self.actor, access=access)
        for slug, kind in spec["access"].items():
            if slug not in current:
                self.lines.append(f"+ access {agent.slug}/{slug}: {kind}")
            elif current[slug].max_kind != kind:
                self.lines.append(f"~ access {agent.slug}/{slug}: {current[slug].max_kind} → "
                                  f"{kind}")
            else:
                continue
            with self.at(f"{path}.access.{slug}"):
                agent_services.system_access_set(actor=self.actor, agent=agent,
                                                 system=System.objects.get(slug=slug),
                                                 max_kind=kind)

    def guardrails(self, agent: Agent, spec: dict, path: str) -> None:
        current = {g.name: g for g in agent.guardrails.select_related("system", "route_to_group")}
        wanted = {g["name"] for g in spec["guardrails"]}
        for name, guardrail in current.items():
            if name not in wanted:
                self.lines.append(f"- guardrail {agent.slug}/{name}")
                with self.at(f"{path}.guardrails"):
                    agent_services.guardrail_delete(actor=self.actor, guardrail=guardrail)
        for index, want in enumerate(spec["guardrails"]):
            guardrail = current.get(want["name"])
            before = guardrail_state(guardrail) if guardrail else None
            keys = self.changed("guardrail", f"{agent.slug}/{want['name']}", before, want,
                                [k for k in GUARDRAIL_KEYS if k != "name"])
            if not keys:
                continue
            fields = {key: want[key] for key in keys}
            if "system" in fields:
                fields["system"] = System.objects.filter(slug=want["system"]).first()
            if "route_to_group" in fields:
                fields["route_to_group"] = Group.objects.filter(
                    name=want["route_to_group"]).first()
            with self.at(f"{path}.guardrails[{index}]"):
                if guardrail is None:
                    agent_services.guardrail_create(actor=self.actor, agent=agent,
                                                    name=want["name"], **fields)
                else:
                    agent_services.guardrail_update(actor=self.actor, guardrail=guardrail,
                                                    **fields)

    def rollback(self, agent: Agent, spec: dict, path: str) -> None:
        steps = list(agent.rollback_steps.order_by("position"))
        for index, want in enumerate(spec["rollback"]):
            where = f"{path}.rollback[{index}]"
            if index >= len(steps):
                self.lines.append(f"+ rollback {agent.slug}/{index + 1}: {want['title']}")
                with self.at(where):
                    agent_services.rollback_step_add(actor=self.actor, agent=agent, **want)
                continue
            before = {"title": steps[index].title, "instructions": steps[index].instructions}
            if self.changed("rollback", f"{agent.slug}/{index + 1}", before, want,
                            ROLLBACK_KEYS):
                with self.at(where):
                    agent_services.rollback_step_update(actor=self.actor, step=steps[index],
                                                        **want)
        for step in reversed(steps[len(spec["rollback"]):]):  # from the end: no renumbering
            self.lines.append(f"- rollback {agent.slug}/{step.position}: {step.title}")
            with self.at(f"{path}.rollback"):
                agent_services.rollback_step_remove(actor=self.actor, step=step)

    def reviewers(self, agent: Agent, spec: dict, path: str) -> None:
        """Listed reviewers (users or groups) hold view_agent and review_agent; others lose them."""
        agent = Agent.objects.prefetch_related("pausers").get(pk=agent.pk)
        users, groups = perm_holders([agent], "review_agent")
        # Owners and pausers keep view_agent: being named on the agent gives it to them.
        named = {u.get_username() for u in agent.owners.values() if u} | {
            u.get_username() for u in agent.pausers.all()}
        for name in spec["reviewers"]:
            user = self.user(name)
            held = portal_services.agent_direct_perms(agent, user=user)
            if not set(REVIEWER_PERMS) <= held:
                self.lines.append(f"+ reviewer {agent.slug}/{name}")
                with self.at(f"{path}.reviewers"):
                    portal_services.agent_permission_grant(actor=self.actor, agent=agent,
                                                           perm=REVIEWER_PERMS, user=user)
        for name in users.get(agent.pk, []):
            if name not in spec["reviewers"]:
                self.lines.append(f"- reviewer {agent.slug}/{name}")
                perms = ["review_agent"] if name in named else list(REVIEWER_PERMS)
                with self.at(f"{path}.reviewers"):
                    portal_services.agent_permission_revoke(actor=self.actor, agent=agent,
                                                            perm=perms, user=self.user(name))
        for name in spec["review_groups"]:
            group = Group.objects.get(name=name)
            held = portal_services.agent_direct_perms(agent, group=group)
            if not set(REVIEWER_PERMS) <= held:
                self.lines.append(f"+ review_group {agent.slug}/{name}")
                with self.at(f"{path}.review_groups"):
                    portal_services.agent_permission_grant(actor=self.actor, agent=agent,
                                                           perm=REVIEWER_PERMS, group=group)
        for name in groups.get(agent.pk, []):
            if name not in spec["review_groups"]:
                self.lines.append(f"- review_group {agent.slug}/{name}")
                with self.at(f"{path}.review_groups"):
                    portal_services.agent_permission_revoke(
                        actor=self.actor, agent=agent, perm=REVIEWER_PERMS,
                        group=Group.objects.get(name=name))

    def status(self, agent: Agent, spec: dict, before: dict, path: str,
               paused_from: str | None) -> Agent:
        """Reach the file's status through the lifecycle services, one legal move at a time."""
        agent = Agent.objects.get(pk=agent.pk)
        target, reason = spec["status"], spec["pause_reason"]
        after = {"status": target, "paused_from": paused_from,
                 "pause_reason": reason if target == Status.PAUSED else ""}
        if target == Status.RETIRED:
            after["paused_from"], after["pause_reason"] = before["paused_from"], before[
                "pause_reason"]
        if not self.changed("agent", agent.slug, before, after, list(after)):
            return agent
        with self.at(f"{path}.status"):
            if target == Status.RETIRED:
                return agent_services.agent_retire(actor=self.actor, agent=agent,
                                                   reason=RETIRE_REASON)
            if agent.status == Status.PAUSED:
                agent = agent_services.agent_resume(actor=self.actor, agent=agent)
            goal = paused_from if target == Status.PAUSED else target
            while agent.status != goal:
                step = 1 if STATUS_LADDER.index(goal) > STATUS_LADDER.index(agent.status) else -1
                agent = agent_services.agent_move(
                    actor=self.actor, agent=agent,
                    to_status=STATUS_LADDER[STATUS_LADDER.index(agent.status) + step])
            if target == Status.PAUSED:
                agent = agent_services.agent_pause(actor=self.actor, agent=agent, reason=reason)
        return agent


def _rank(status: str, paused_from: str | None) -> int:
    """Position on proposed → pilot → live; a paused agent counts where it was paused from."""
    if status == Status.PAUSED:
        status = paused_from or Status.PROPOSED
    return STATUS_LADDER.index(status) if status in STATUS_LADDER else len(STATUS_LADDER)


def _flat_settings(spec: dict) -> dict:
    """The agent settings agent_create/agent_update write, keyed as in the file."""
    flat = {}
    for key in AGENT_SETTINGS:
        head, _, tail = key.partition(".")
        flat[key] = spec[head][tail] if tail else spec[head]
    flat["pausers"], flat["sources"] = spec["pausers"], spec["sources"]
    return flat
