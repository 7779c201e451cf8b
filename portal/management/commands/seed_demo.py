"""`python manage.py seed_demo`: demo people, then the demo registry (demo/registry.yaml),
then twelve weeks of demo metrics (metrics.demo).

Idempotent. Users are created when missing and never changed afterwards. The registry file is
applied with apply_agents the first time; once its agents exist it is left alone, so what
someone changed in the portal survives a restart of `make run` (`--reset` re-applies the
file and brings the demo back to how it ships).
"""

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from agents import registry_yaml, rollout_demo
from agents.models import Agent
from metrics import alert_demo, derived
from metrics import demo as demo_metrics
from portal import audit
from portal.roles import ADMINS, OWNERS, REVIEWERS, REVOPS

DEMO_PASSWORD = "steward-demo"
DEMO_REGISTRY = Path(settings.BASE_DIR) / "demo" / "registry.yaml"


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str
    role: str
    groups: tuple[str, ...] = ()
    superuser: bool = False


CAST = (
    DemoUser("admin", "Ada", "Admin", "admin (superuser, /admin/)", (ADMINS,), superuser=True),
    DemoUser("rachel", "Rachel", "Reyes", "RevOps lead: sees every agent", (REVOPS,)),
    DemoUser("rob", "Rob", "Rossi", "reviewer of every demo agent", (REVIEWERS,)),
    DemoUser("maria", "Maria", "Moreau", "manager: reviews refunds over 500", (REVIEWERS,)),
    DemoUser("bob", "Bob", "Brown", "business owner", (OWNERS,)),
    DemoUser("paula", "Paula", "Petrova", "process owner", (OWNERS,)),
    DemoUser("tim", "Tim", "Tanaka", "technical owner", (OWNERS,)),
    DemoUser("olivia", "Olivia", "Okafor", "may pause agents"),
    DemoUser("dana", "Dana", "Dubois", "data source maintainer"),
    DemoUser("victor", "Victor", "Varga", "viewer: no agents"),
)


# What the demo agents ask the gate on the first load: (idempotency key, agent, proposal).
DEMO_PROPOSALS = (
    ("demo-1", "refund-replies", {
        "system": "helpdesk", "operation": "refund_reply", "kind": "draft",
        "target": "ticket 5521", "summary": "Refund 650 USD for a damaged order",
        "amount": 650, "currency": "USD", "changes": {"currency": "USD"}, "confidence": 0.91,
        "content": "Dear Ms Lee, we are sorry your order arrived damaged. We have refunded "
                   "650 USD to your card; it will show within 5 working days.",
        "sources": ["ticket-history", "refund-policy"], "prompt": "Draft a refund reply.",
        "cost_usd": 0.004, "tokens": 950}),
    ("demo-2", "crm-hygiene", {
        "system": "crm", "operation": "update_opportunity", "kind": "execute",
        "target": "opportunity 9001", "summary": "Move Acme renewal to Closed Won",
        "changes": {"stage": "Closed Won", "close_date": "2026-11-20"}, "confidence": 0.84,
        "sources": ["crm-accounts"], "prompt": "Tidy the Acme renewal.", "cost_usd": 0.002}),
    ("demo-3", "crm-hygiene", {
        "system": "crm", "operation": "update_contact", "kind": "execute",
        "target": "contact 311", "summary": "Fix a phone number's format",
        "changes": {"phone": "+44 20 7946 0000"}, "confidence": 0.97,
        "sources": ["crm-accounts"], "cost_usd": 0.001}),
    ("demo-4", "account-research", {
        "system": "crm", "operation": "draft_brief", "kind": "draft",
        "target": "account Globex", "summary": "Meeting brief for Globex on Thursday",
        "content": "Globex: 3 open opportunities, renewal due in March, champion is the CFO.",
        "confidence": 0.88, "sources": ["crm-accounts", "product-docs"], "cost_usd": 0.01}),
    ("demo-5", "kpi-reporter", {
        "system": "knowledge-base", "operation": "draft_commentary", "kind": "draft",
        "summary": "Weekly revenue commentary", "sources": ["finance-warehouse"]}),
)


class Command(BaseCommand):
    help = "Create the demo users and load demo/registry.yaml (safe to run again)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reset", action="store_true",
                            help="Re-apply demo/registry.yaml even if the demo is loaded, "
                                 "undoing changes made to the demo agents in the portal.")
        parser.add_argument("--force", action="store_true",
                            help="Run even with DEBUG off (the demo passwords are public).")

    def handle(self, *args, reset: bool, force: bool, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo creates a superuser with a public password; it runs "
                               "only with DJANGO_DEBUG=1 (or pass --force on a throwaway "
                               "installation).")
        with transaction.atomic():
            created = self.create_users()
            first_load = not self.registry_loaded()
            if reset or first_load:
                self.load_registry()
            if first_load:
                self.propose_demo_actions()
                alert_demo.make_backlog()  # before the metrics: it moves a gate day
            else:
                self.stdout.write("The demo registry is already loaded; left as it is "
                                  "(--reset re-applies demo/registry.yaml).")
            # every run: the twelve weeks of metrics end with the current week
            self.stdout.write(demo_metrics.seed(reset=reset).summary)
            derived.compute()  # today's trust and cost figures from the demo's gate calls
        # after the commit: alerts tell people (e-mail tasks) about committed data only
        self.stdout.write(alert_demo.raise_alerts().summary)
        self.print_logins(created)

    def create_users(self) -> set[str]:
        """Create the missing demo users (password set without the validators: it is a demo)."""
        User = get_user_model()
        created = set()
        for person in CAST:
            if User.objects.filter(username=person.username).exists():
                continue
            user = User(username=person.username, first_name=person.first_name,
                        last_name=person.last_name, email=f"{person.username}@example.com",
                        is_staff=person.superuser, is_superuser=person.superuser)
            user.set_password(DEMO_PASSWORD)
            user.save()
            user.groups.set(Group.objects.filter(name__in=person.groups))
            audit.record(actor=None, verb="user.created", obj=user,
                         data={"username": user.username, "groups": list(person.groups),
                               "superuser": person.superuser, "because": "demo data"})
            created.add(person.username)
        return created

    def propose_demo_actions(self) -> None:
        """Send a few realistic proposals through the real gate, so the inbox has work."""
        from agents.services import agent_token_create
        from reviews import gate

        tokens = {}
        for key, slug, proposal in DEMO_PROPOSALS:
            if slug not in tokens:
                agent = Agent.objects.get(slug=slug)
                tokens[slug] = agent_token_create(actor=None, agent=agent, name="demo")[0]
            action = gate.propose(token=tokens[slug],
                                  proposal={**proposal, "idempotency_key": key}).action
            self.stdout.write(f"  {slug}: {proposal['summary']} → {action.decision}")

    def load_registry(self, *, now=None) -> None:
        """Apply demo/registry.yaml. The rollout plan gates pilot → live, so new agents the
        file has live pass through pilot first, where their plans are completed."""
        registry = self.demo_registry()
        staged = rollout_demo.staged(registry)
        if staged is not None:
            try:
                lines = registry_yaml.apply(staged)
            except registry_yaml.RegistryError as exc:
                raise CommandError(f"{DEMO_REGISTRY}: nothing was changed.\n"
                                   + "\n".join(exc.messages)) from None
            for line in lines:
                self.stdout.write(line)
        rollout_demo.seed_plans(registry, now=now)
        call_command("apply_agents", str(DEMO_REGISTRY), stdout=self.stdout,
                     stderr=self.stderr)

    def demo_registry(self) -> registry_yaml.Registry:
        try:
            return registry_yaml.load_file(DEMO_REGISTRY)
        except registry_yaml.RegistryError as exc:
            raise CommandError(f"{DEMO_REGISTRY}: nothing was changed.\n"
                               + "\n".join(exc.messages)) from None

    def registry_loaded(self) -> bool:
        slugs = [agent["slug"] for agent in self.demo_registry().agents]
        return Agent.objects.filter(slug__in=slugs).count() == len(slugs)

    def print_logins(self, created: set[str]) -> None:
        rows = [("username", "role", "password")] + [
            (p.username, p.role, DEMO_PASSWORD) for p in CAST]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Demo logins"))
        for index, row in enumerate(rows):
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
            if index == 0:
                self.stdout.write("  ".join("-" * width for width in widths))
        if len(created) < len(CAST):
            self.stdout.write("(Users that already existed keep the password they have.)")
