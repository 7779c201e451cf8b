"""`python manage.py export_agents [-o FILE]`: the registry in apply_agents' format."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from agents import registry_yaml


class Command(BaseCommand):
    help = "Write the registry (systems, data sources, groups, agents) as YAML."

    def add_arguments(self, parser) -> None:
        parser.add_argument("-o", "--output", metavar="FILE",
                            help="Write to FILE instead of standard output.")

    def handle(self, *args, output: str | None, **options) -> None:
        text = registry_yaml.export()
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{output}: {exc.strerror or exc}") from None
        self.stderr.write(f"Wrote the registry to {output}.")
