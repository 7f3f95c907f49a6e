"""python manage.py ledger_check [--full]: the ledger's health check, now, from a shell or cron."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from dashboards import health
from dashboards.tasks import ledger_health_check_task


class Command(BaseCommand):
    help = (
        "Check the ledger's conservation and print the result (exit status 1 when it does not add up). "
        "Without --full: the scheduled check (the entries since its last run, every account and session). "
        "With --full: every entry read again (minutes on a large ledger: weekly, off-peak), which also "
        "sees a change to an old row made past the database's guards; the dashboards show its result."
    )

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true", help="Read the whole ledger.")

    def handle(self, *args, full: bool, **options):
        if full:
            result = health.ledger_health_full()
        elif ledger_health_check_task() is None:  # single-flight: a scheduled run is at work
            raise CommandError("The scheduled check is running elsewhere; try again when it ends.")
        else:
            result = health.latest()
        self.stdout.write(json.dumps(result, indent=2, default=str))
        if not result["healthy"]:
            raise CommandError("The ledger does not add up.")
