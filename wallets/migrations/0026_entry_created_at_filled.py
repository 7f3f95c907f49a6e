"""Fills in the time of the entries written before entries carried it (migration 0025), from their
transactions, in batches of a few thousand entries each committed on its own: no long transaction,
no lock held on the table beyond a batch's rows, postings go on meanwhile (theirs carry the time
already). Idempotent: a batch takes only entries still without their time."""

from django.db import migrations

BATCH = 5000


def fill(apps, schema_editor):
    connection = schema_editor.connection
    after = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM wallets_entry WHERE id > %s AND created_at IS NULL ORDER BY id LIMIT %s", [after, BATCH]
            )
            batch = [row[0] for row in cursor.fetchall()]
            if not batch:
                return
            cursor.execute(
                "UPDATE wallets_entry AS e SET created_at = t.created_at FROM wallets_ledgertransaction AS t "
                "WHERE e.id = ANY (%s) AND e.created_at IS NULL AND t.id = e.transaction_id",
                [batch],
            )
        after = batch[-1]


class Migration(migrations.Migration):
    atomic = False  # each batch commits on its own (autocommit)

    dependencies = [("wallets", "0025_entry_created_at")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop, elidable=True)]
