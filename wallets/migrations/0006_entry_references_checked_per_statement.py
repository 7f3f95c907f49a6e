"""Check an entry's references once per INSERT statement instead of by a foreign key per row.

The entries' two foreign keys (to their transaction, and the composite one to (account, asset)
of migration 0002) each ran a lookup and a row lock per inserted entry: a fifth of a billing
sweep's cost, which inserts tens of thousands of entries per statement. The same guarantees now
come from set-based checks:
- the statement trigger of migration 0002 (wallets_entry_balanced) also refuses entries
  whose transaction does not exist, or whose account does not exist or holds another asset;
- what a foreign key also prevents on the other side: a ledger transaction is never deleted (0002
  already refuses it); an account with entries is not deleted, and no account's id or asset ever
  changes (a trigger below). The statement trigger share-locks the accounts its entries name, as
  a foreign key does, so a delete cannot race an insert; the ledger's health check also counts
  entries without their account or transaction, or in another asset than their account's.
"""

import importlib

from django.db import migrations, models


BALANCED_FUNCTION = importlib.import_module("wallets.migrations.0002_seed_assets_and_ledger_guards").BALANCED_FUNCTION

GUARDS = """
ALTER TABLE wallets_entry DROP CONSTRAINT wallets_entry_asset_is_accounts;

CREATE OR REPLACE FUNCTION wallets_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_entries GROUP BY transaction_id, asset_id HAVING SUM(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger entries must sum to zero per transaction and asset'
            USING ERRCODE = 'check_violation';
    END IF;
    -- What a foreign key would do: share-lock the accounts named, so that none is deleted
    -- before this transaction ends (a no-op on the rows the ledger's posting has locked).
    PERFORM 1 FROM wallets_account WHERE id IN (SELECT DISTINCT account_id FROM new_entries) FOR KEY SHARE;
    IF EXISTS (
        SELECT 1 FROM new_entries AS e LEFT JOIN wallets_account AS a ON a.id = e.account_id
        WHERE a.id IS NULL OR a.asset_id <> e.asset_id
    ) THEN
        RAISE EXCEPTION 'a ledger entry names an unknown account, or one that holds another asset'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM new_entries AS e LEFT JOIN wallets_ledgertransaction AS t ON t.id = e.transaction_id
        WHERE t.id IS NULL
    ) THEN
        RAISE EXCEPTION 'a ledger entry names an unknown transaction'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION wallets_account_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id <> OLD.id OR NEW.asset_id <> OLD.asset_id THEN
            RAISE EXCEPTION 'an account''s id and asset never change' USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM wallets_entry WHERE account_id = OLD.id) THEN
        RAISE EXCEPTION 'account % has ledger entries: it cannot be deleted', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER wallets_account_keep BEFORE DELETE OR UPDATE OF id, asset_id ON wallets_account
    FOR EACH ROW EXECUTE FUNCTION wallets_account_keep();
"""

GUARDS_REVERSE = (
    """
DROP TRIGGER wallets_account_keep ON wallets_account;
DROP FUNCTION wallets_account_keep();
"""
    + BALANCED_FUNCTION
    + """
ALTER TABLE wallets_entry ADD CONSTRAINT wallets_entry_asset_is_accounts
    FOREIGN KEY (account_id, asset_id) REFERENCES wallets_account (id, asset_id);
"""
)


class Migration(migrations.Migration):
    dependencies = [("wallets", "0005_ledger_post_function")]

    operations = [
        migrations.AlterField(
            model_name="entry",
            name="transaction",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=models.deletion.PROTECT,
                related_name="entries",
                to="wallets.ledgertransaction",
            ),
        ),
        migrations.RunSQL([GUARDS], [GUARDS_REVERSE]),
        # The target of the composite foreign key, which nothing needs any more.
        migrations.RemoveConstraint(model_name="account", name="wallets_account_id_asset"),
    ]
