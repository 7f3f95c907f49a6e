"""python manage.py seed_demo [--users N] [--if-empty]: demo people and months of history."""

from __future__ import annotations

import contextlib
import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from dashboards import demo

PROGRESS_FROM = 25  # users; fewer go by too fast for a bar


class Command(BaseCommand):
    help = (
        "Create demo users, vendors and a staff member with months of sessions, deposits and charges "
        "on the ledger (through the Chipi sandbox). Idempotent; prints the credentials."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=12, help="How many demo users (default 12).")
        parser.add_argument("--vendors", type=int, help="How many demo vendors (default: a quarter of the users, 3+).")
        parser.add_argument("--seed", type=int, default=7, help="Random seed of the stories (default 7).")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the database has users other than the demo's (for `make run`): demo data "
            "an interrupted run left half-made is completed.",
        )

    def handle(self, *args, users: int, vendors: int | None, seed: int, if_empty: bool, **options):
        if not settings.DEMO_DATA_ALLOWED:
            raise CommandError(
                "seed_demo's accounts share a published password: it runs only with DEBUG on, "
                "or where DEMO_DATA_ALLOWED=1 says demo data is wanted."
            )
        if users < 1 or (vendors is not None and vendors < 1):
            raise CommandError("--users and --vendors must be at least 1.")
        vendors = vendors or max(3, users // 4)
        if if_empty and demo.users_of_its_own_exist():
            self.stdout.write("The database has users of its own: no demo data added.")
            self._print_credentials(users=users, vendors=vendors)  # of the demo's people it has, if any
            return
        self.stdout.write(f"Demo data: {users} users and {vendors} vendors with months of history (a little while)...")
        with (
            self._quiet(options["verbosity"]),
            tqdm(
                total=users, desc="Demo users", unit="user", disable=users < PROGRESS_FROM, file=self.stderr._out
            ) as bar,
        ):
            try:
                report = demo.seed(users=users, vendors=vendors, seed=seed, progress=bar.update)
            except RuntimeError as exc:
                raise CommandError(str(exc)) from None
        if report.written:
            completed = " (completing what an interrupted run left)" if report.resumed else ""
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo data: {len(report.created_users)} people, {report.services} services, "
                    f"{report.sessions} past sessions{completed}."
                )
            )
        else:
            self.stdout.write("Demo data is there already: nothing changed.")
        self._print_credentials(users=users, vendors=vendors)

    def _print_credentials(self, *, users: int, vendors: int) -> None:
        found = demo.credentials(users=users, vendors=vendors)
        if not found:
            return
        self.stdout.write("\nSign in (API: POST /api/v1/auth/login; staff also at /admin/):")
        for role, email, password in found:
            self.stdout.write(f"  {role:<7} {email:<32} {password}")

    @staticmethod
    @contextlib.contextmanager
    def _quiet(verbosity: int):
        """Each of the hundreds of sweeps and sends logs a line; keep them for -v 2."""
        if verbosity >= 2:
            yield
            return
        # kombu warns that the in-memory broker has no hostname: true, and nothing to act on.
        quiet = {"paygo": logging.WARNING, "celery": logging.WARNING, "kombu": logging.ERROR}
        loggers = [logging.getLogger(name) for name in quiet]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(quiet[logger.name])
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
