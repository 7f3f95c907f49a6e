"""A metering charge is a ledger entry (issue 15): the payer's debit carries its session, the
interval it bills and the platform's fee, and a sweep's batch is one ledger transaction. wallets_post
writes them: a new copy of wallets/sql/wallets_post.sql, loaded from sql/ beside this migration (the
reverse loads 0008's). streaming/migrations/0009 moves the existing charge records onto these columns.
"""

from pathlib import Path

import django.db.models.deletion
import django.db.models.expressions
import paygo.fields
from django.db import migrations, models

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [
        ("streaming", "0008_usage_bounds"),
        ("wallets", "0008_ledger_sql_from_files"),
    ]

    operations = [
        migrations.AddField(
            model_name="entry",
            name="billed_from",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="entry",
            name="billed_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="entry",
            name="fee",
            field=paygo.fields.MinorUnitsField(
                blank=True, help_text="The platform's fee on this charge (the vendor got the rest).", null=True
            ),
        ),
        migrations.AddField(
            model_name="entry",
            name="session",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="charge_entries",
                to="streaming.streamingsession",
            ),
        ),
        migrations.AddIndex(
            model_name="entry",
            index=models.Index(
                condition=models.Q(("session__isnull", False)),
                fields=["session", "billed_until"],
                include=("amount", "fee"),
                name="wallets_entry_session_charges",
            ),
        ),
        migrations.AddConstraint(
            model_name="entry",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("amount__lt", 0),
                        ("billed_from__isnull", False),
                        ("billed_until__gte", models.F("billed_from")),
                        ("fee__gte", 0),
                        (
                            "fee__lte",
                            django.db.models.expressions.CombinedExpression(models.F("amount"), "*", models.Value(-1)),
                        ),
                        ("session__isnull", False),
                    ),
                    models.Q(
                        ("billed_from__isnull", True),
                        ("billed_until__isnull", True),
                        ("fee__isnull", True),
                        ("session__isnull", True),
                    ),
                    _connector="OR",
                ),
                name="wallets_entry_charge_shape",
            ),
        ),
        migrations.RunSQL([(SQL / "0009_wallets_post.sql").read_text()], [(SQL / "0008_wallets_post.sql").read_text()]),
    ]
