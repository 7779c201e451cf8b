"""Agent tokens: random, shown once, stored as a hash, revocable, dead with their agent."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from agents import services
from agents.models import AgentToken
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


def test_token_authenticates_by_hash_until_revoked():
    agent = make_agent(slug="replies")
    token, secret = services.agent_token_create(actor=None, agent=agent, name="prod")
    assert len(secret) > 40 and secret.startswith(token.prefix)
    assert services.agent_token_authenticate(secret) == token
    assert services.agent_token_authenticate(secret[:-1] + "x") is None
    assert services.agent_token_authenticate(token.secret_hash) is None  # the hash is no key
    services.agent_token_revoke(actor=None, token=token)
    assert services.agent_token_authenticate(secret) is None


def test_tokens_are_unique_random_secrets():
    agent = make_agent(slug="replies")
    secrets = {services.agent_token_create(actor=None, agent=agent, name="t")[1]
               for _ in range(20)}
    assert len(secrets) == 20


def test_token_of_retired_agent_no_longer_authenticates():
    agent = make_agent(slug="replies")
    _token, secret = services.agent_token_create(actor=None, agent=agent, name="prod")
    services.agent_retire(actor=None, agent=agent)
    assert services.agent_token_authenticate(secret) is None


def test_last_used_is_written_at_most_once_a_minute():
    agent = make_agent(slug="replies")
    token, secret = services.agent_token_create(actor=None, agent=agent, name="prod")
    services.agent_token_authenticate(secret)
    first = AgentToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    services.agent_token_authenticate(secret)
    assert AgentToken.objects.get(pk=token.pk).last_used_at == first
    AgentToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    services.agent_token_authenticate(secret)
    assert AgentToken.objects.get(pk=token.pk).last_used_at > first - timedelta(seconds=1)


def test_create_agent_token_command_prints_only_the_token():
    agent = make_agent(slug="replies")
    out = StringIO()
    call_command("create_agent_token", "replies", "--name", "ci", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    token = AgentToken.objects.get(agent=agent)
    assert token.name == "ci" and services.agent_token_authenticate(lines[0]) == token


def test_create_agent_token_command_names_an_unknown_agent():
    with pytest.raises(CommandError, match="No agent with slug 'nope'"):
        call_command("create_agent_token", "nope")
