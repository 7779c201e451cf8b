"""`python manage.py verify_audit`: recompute the audit hash chain and compare it with the
exported head. Exit 0 with a one-line summary, or non-zero naming the first bad event."""

from django.core.management.base import BaseCommand, CommandError

from portal import audit_chain


class Command(BaseCommand):
    help = ("Recompute the audit hash chain and compare it with the exported head; exit "
            "non-zero naming the first bad sequence number if anything was tampered with.")

    def handle(self, *args, **options) -> None:
        result = audit_chain.verify()
        if not result.ok:
            raise CommandError(result.message)
        self.stdout.write(result.message)
        if not audit_chain.append_only_enforced():
            # SQLite has no triggers: say so rather than degrade silently.
            self.stderr.write("Note: this database does not refuse UPDATE/DELETE of audit "
                              "events; use PostgreSQL in production.")
