"""`python manage.py apply_agents FILE.yaml [--dry-run]`: the registry as code."""

from django.core.management.base import BaseCommand, CommandError

from agents import registry_yaml


class Command(BaseCommand):
    help = ("Create or update systems, data sources, groups and agents from a YAML file, "
            "in one transaction. A bad file changes nothing.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="The registry file, e.g. demo/registry.yaml.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Print the changes it would make and write nothing.")

    def handle(self, *args, file: str, dry_run: bool, **options) -> None:
        try:
            registry = registry_yaml.load_file(file)
            lines = registry_yaml.apply(registry, dry_run=dry_run)  # acts as the system
        except registry_yaml.RegistryError as exc:
            raise CommandError(f"{file}: nothing was changed.\n"
                               + "\n".join(exc.messages)) from None
        for line in lines:
            self.stdout.write(line)
        count = f"{len(lines)} change{'' if len(lines) == 1 else 's'}"
        if dry_run:
            self.stdout.write(f"Dry run: {count} would be made; nothing was written.")
        elif lines:
            self.stdout.write(self.style.SUCCESS(f"Applied {file}: {count}."))
        else:
            self.stdout.write(f"{file}: nothing to change.")
