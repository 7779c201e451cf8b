import time

from django.core.management.base import BaseCommand

from metrics import rollups


class Command(BaseCommand):
    help = ("Recompute every weekly and monthly rollup from the observations (after a bulk "
            "change made outside Steward, or to check nothing drifted). Safe to run any time: "
            "scorecards keep showing the old rollups until it commits.")

    def handle(self, *args, **options):
        started = time.monotonic()
        written = rollups.rebuild()
        self.stdout.write(f"Rebuilt {written:,} rollup{'s' if written != 1 else ''} in "
                          f"{time.monotonic() - started:.1f} s.")
