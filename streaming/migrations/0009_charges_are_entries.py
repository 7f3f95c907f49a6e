"""A session's charges are ledger entries (issue 15): every charge record moves onto the debit of
its payer in its ledger transaction (the session, the interval it billed, the platform's fee), and
the charge table goes. Balances do not change: no entry is added or removed, and only the new
columns of the payers' debits are filled (the append-only trigger is set aside for that statement).

The guards follow: a new copy of streaming/sql/charge_guards.sql, loaded from sql/ beside this
migration, checks the charges' sessions on the entries. The reverse restores the charge table's
shape and 0007's guards, not the records (their entries keep what they carry).
"""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"

MOVE = """
ALTER TABLE wallets_entry DISABLE TRIGGER wallets_entry_append_only;
WITH charge AS (
    SELECT c.ledger_transaction_id AS tx, c.session_id, c.metered_until,
           coalesce(lag(c.metered_until) OVER (PARTITION BY c.session_id ORDER BY c.metered_until, c.id),
                    s.start_time) AS billed_from,
           s.payer_account_id, s.payee_account_id
    FROM streaming_sessioncharge AS c JOIN streaming_streamingsession AS s ON s.id = c.session_id
)
UPDATE wallets_entry AS e
SET session_id = charge.session_id, billed_from = least(charge.billed_from, charge.metered_until),
    billed_until = charge.metered_until,
    fee = -e.amount - coalesce((
        SELECT sum(p.amount) FROM wallets_entry AS p
        WHERE p.transaction_id = e.transaction_id AND p.account_id = charge.payee_account_id
    ), 0)
FROM charge
WHERE e.transaction_id = charge.tx AND e.account_id = charge.payer_account_id AND e.amount < 0;
ALTER TABLE wallets_entry ENABLE TRIGGER wallets_entry_append_only;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("streaming", "0008_usage_bounds"),
        ("wallets", "0009_charges_are_entries"),
    ]

    operations = [
        migrations.RunSQL(MOVE, migrations.RunSQL.noop),
        migrations.RunSQL(
            [
                "DROP TRIGGER IF EXISTS streaming_charges_refer ON streaming_sessioncharge",
                "DROP TRIGGER IF EXISTS streaming_charge_keep ON streaming_sessioncharge",
                "DROP FUNCTION IF EXISTS streaming_charge_keep()",
                (SQL / "0009_charge_guards.sql").read_text(),
            ],
            [
                "DROP TRIGGER IF EXISTS streaming_charges_refer ON wallets_entry",
                (SQL / "0007_charge_guards.sql").read_text(),
            ],
        ),
        migrations.DeleteModel(name="SessionCharge"),
    ]
