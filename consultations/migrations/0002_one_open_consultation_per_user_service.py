# One open consultation (pending or accepted) per user and service, kept by a partial unique index.
#
# Before it, every ask opened another: a live database may hold several open consultations of one user
# about one service. A unique index cannot be added NOT VALID (PostgreSQL has that for CHECK and foreign
# keys only), so they are resolved first, in the same transaction: of each such set, the one the user
# and vendor are using stays open (the one with a running call, else an accepted one, else the one with
# the latest message) and the others are cancelled, as the user would cancel them (closed_at now). Their
# messages stay where they were written, readable in the closed threads. Nobody is notified: nothing
# changed for either side but requests neither would have wanted twice. Each cancelled id is logged.
#
# A surplus consultation with a call still running is not cancelled here: stopping a metered session
# bills it, which is streaming's to do, not a migration's. The migration stops, naming them, and
# changes nothing; an operator stops those calls (or waits for them to end) and runs it again.

import logging

from django.conf import settings
from django.db import migrations, models
from django.db.models import Case, Count, Exists, OuterRef, Value, When
from django.utils import timezone

logger = logging.getLogger("paygo.consultations")

OPEN_STATUSES = ["pending", "accepted"]


def cancel_surplus_open_consultations(apps, schema_editor):
    Consultation = apps.get_model("consultations", "Consultation")
    ConsultationCall = apps.get_model("consultations", "ConsultationCall")
    # Until the index exists (this transaction's end), no request opens, accepts or calls on one:
    # plain reads go on.
    schema_editor.execute(f"LOCK TABLE {Consultation._meta.db_table} IN EXCLUSIVE MODE")
    now = timezone.now()
    crowded = (
        Consultation.objects.filter(status__in=OPEN_STATUSES)
        .values("user_id", "service_id")
        .annotate(open_count=Count("id"))
        .filter(open_count__gt=1)
        .order_by("user_id", "service_id")
    )
    for pair in crowded:
        ranked = (
            Consultation.objects.filter(status__in=OPEN_STATUSES, user_id=pair["user_id"], service_id=pair["service_id"])
            .annotate(
                calling=Exists(ConsultationCall.objects.filter(consultation=OuterRef("pk"), session__status="active")),
                accepted=Case(When(status="accepted", then=Value(1)), default=Value(0)),
            )
            .order_by("-calling", "-accepted", "-last_message_at", "-id")
        )
        kept, *surplus = ranked
        calling = [consultation.pk for consultation in surplus if consultation.calling]
        if calling:
            raise RuntimeError(
                f"Consultations {calling} and {kept.pk} (user {pair['user_id']}, service {pair['service_id']}) "
                "each have a call running: stop the calls (or wait for them to end), then migrate again. "
                "Nothing was changed."
            )
        cancelled = [consultation.pk for consultation in surplus]
        Consultation.objects.filter(pk__in=cancelled).update(status="cancelled", closed_at=now, updated_at=now)
        logger.warning(
            "User %s asked about service %s more than once: consultation %s stays open; %s cancelled.",
            pair["user_id"],
            pair["service_id"],
            kept.pk,
            cancelled,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("consultations", "0001_initial"),
        ("marketplace", "0006_free_seconds_time_units"),
        ("streaming", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(cancel_surplus_open_consultations, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="consultation",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status__in", OPEN_STATUSES)),
                fields=("user", "service"),
                name="consultation_one_open_per_user_service",
            ),
        ),
    ]
