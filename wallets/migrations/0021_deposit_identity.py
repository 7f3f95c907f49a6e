# A deposit is one transfer (services.ChainDeposit), not one transaction hash: one transaction (a
# multicall) can pay several deposits, and each is swept into the treasury on its own. A sweep
# now belongs to its deposit's ledger credit (one each) rather than being unique per hash.
#
# The ledger's references are not rewritten (the ledger is append-only): a deposit credited under
# its hash alone ("deposit:<hash>") stays so, and services.deposits_credited_by_hash reads it as the
# first of its transaction's transfers equal to it, so that it is never credited again.

from django.db import migrations, models
import django.db.models.deletion

# Every sweep so far was made in its deposit's transaction, under the reference "deposit:" + the
# hash it keeps (services.deposit_hash_reference, as it was). The deferred foreign key is checked
# at once, so that the column can be altered in this same transaction.
LINK_SWEEPS_TO_THEIR_DEPOSITS = """
SET CONSTRAINTS ALL IMMEDIATE;
UPDATE wallets_sweep AS s SET deposit_id = t.id
FROM wallets_ledgertransaction AS t
WHERE t.reference = 'deposit:' || lower(btrim(s.deposit_tx_hash)) AND t.kind = 'deposit';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM wallets_sweep WHERE deposit_id IS NULL) THEN
        RAISE EXCEPTION 'wallets 0021: a sweep has no deposit credited under reference ''deposit:'' || its '
            'deposit_tx_hash: %', (SELECT string_agg(id::text, ', ') FROM wallets_sweep WHERE deposit_id IS NULL);
    END IF;
END $$;
SET CONSTRAINTS ALL DEFERRED;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0020_outbox_needs_review"),
    ]

    operations = [
        migrations.AddField(
            model_name="sweep",
            name="deposit",
            field=models.OneToOneField(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="sweep",
                to="wallets.ledgertransaction",
            ),
        ),
        migrations.RunSQL(LINK_SWEEPS_TO_THEIR_DEPOSITS, reverse_sql=migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="sweep",
            name="deposit",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="sweep",
                to="wallets.ledgertransaction",
            ),
        ),
        migrations.AlterField(
            model_name="sweep",
            name="deposit_tx_hash",
            field=models.CharField(db_index=True, max_length=66),
        ),
    ]
