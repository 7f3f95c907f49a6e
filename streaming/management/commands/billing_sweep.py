"""`python manage.py billing_sweep`: run one billing sweep now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from streaming.payouts import payouts_queue
from streaming.sweep import sweep


class Command(BaseCommand):
    help = "Charge every active session up to now (the same sweep Celery beat runs)."

    def add_arguments(self, parser):
        parser.add_argument("--shard", type=int, default=0)
        parser.add_argument("--shards", type=int, default=1)

    def handle(self, *args, shard: int, shards: int, **options):
        try:
            result = sweep(shard=shard, shards=shards)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if result.vendors:
            payouts_queue(vendor_ids=result.vendors)
        self.stdout.write(
            f"Swept {result.sessions} sessions in {result.batches} batches: {result.charged} charged, "
            f"{result.stopped} stopped."
        )
