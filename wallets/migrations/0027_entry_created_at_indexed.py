"""An account's entries indexed by (account, time newest first, id newest first), the order its
history is shown in, in place of (account, id newest first), which served only sums per account (the
new index serves them as well); and the entries' time made NOT NULL, now that 0026 filled it in.

Safe on a big table, each step committed on its own: the index is built and the old one dropped
CONCURRENTLY (writes go on); NOT NULL is proven by a CHECK constraint added NOT VALID and then
validated (a scan that blocks no writes), which SET NOT NULL then trusts instead of scanning under
its exclusive lock. The guards are installed again from a frozen copy of wallets/sql/ledger_guards.sql
beside this migration, without the exception 0025's copy made for the filling: entries are append-only
again, with no exception."""

from pathlib import Path

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY, and each step its own short transaction

    dependencies = [("wallets", "0026_entry_created_at_filled")]

    operations = [
        AddIndexConcurrently(
            model_name="entry",
            index=models.Index(
                fields=["account", "-created_at", "-id"],
                include=["transaction", "amount"],
                name="wallets_entry_account_time",
            ),
        ),
        RemoveIndexConcurrently(model_name="entry", name="wallets_entry_account_id_cov"),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    [
                        "ALTER TABLE wallets_entry ADD CONSTRAINT wallets_entry_created_at_set "
                        "CHECK (created_at IS NOT NULL) NOT VALID",
                        "ALTER TABLE wallets_entry VALIDATE CONSTRAINT wallets_entry_created_at_set",
                        "ALTER TABLE wallets_entry ALTER COLUMN created_at SET NOT NULL",
                        "ALTER TABLE wallets_entry DROP CONSTRAINT wallets_entry_created_at_set",
                    ],
                    ["ALTER TABLE wallets_entry ALTER COLUMN created_at DROP NOT NULL"],
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="entry", name="created_at", field=models.DateTimeField(editable=False)
                ),
            ],
        ),
        migrations.RunSQL(
            [(SQL / "0027_ledger_guards.sql").read_text(), "DROP FUNCTION wallets_entry_refuse_change()"],
            [(SQL / "0025_ledger_guards.sql").read_text()],
        ),
    ]
