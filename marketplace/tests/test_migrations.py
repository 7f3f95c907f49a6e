"""Data migrations of the marketplace, run forward from the state before them on real rows."""

from __future__ import annotations

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from conftest import money_db
from marketplace.models import Service

BEFORE_FREE_SECONDS_RULE = [("marketplace", "0005_service_price_version")]


@money_db
def test_free_seconds_of_units_not_metered_by_time_go_to_zero_and_nothing_else_moves(victor, make_service):
    """They were accepted and never honoured: set to 0, nothing billed changes, so neither does the
    price version nor the time the service was last changed; a time-metered service keeps its own."""
    timed = make_service(victor, unit="per_minute", free_seconds=45)
    others = [make_service(victor, unit=unit) for unit in ("per_session", "per_gb", "per_request", "per_transaction")]
    MigrationExecutor(connection).migrate(BEFORE_FREE_SECONDS_RULE)
    try:
        # What the code before let vendors write.
        Service.objects.filter(pk__in=[o.pk for o in others]).update(free_seconds=60, price_version=3)
        before = {row[0]: row for row in Service.objects.values_list("pk", "price_version", "updated_at")}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    after = Service.objects.order_by("pk").values_list("pk", "unit", "free_seconds", "price_version", "updated_at")
    assert [(pk, unit, free) for pk, unit, free, _, _ in after] == [
        (timed.pk, "per_minute", 45),
        *[(o.pk, o.unit, 0) for o in others],
    ]
    assert {pk: (pk, version, updated) for pk, _, _, version, updated in after} == before
