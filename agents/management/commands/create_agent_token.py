from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agents import services
from agents.models import Agent


class Command(BaseCommand):
    help = "Create an API token for an agent and print it (one line, nothing else)."

    def add_arguments(self, parser):
        parser.add_argument("agent_slug")
        parser.add_argument("--name", default="cli", help="A name to recognise the token by.")

    def handle(self, *args, agent_slug, name, **options):
        try:
            agent = Agent.objects.get(slug=agent_slug)
        except Agent.DoesNotExist:
            raise CommandError(f"No agent with slug '{agent_slug}'.") from None
        try:
            _token, secret = services.agent_token_create(actor=None, agent=agent, name=name)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(secret)
