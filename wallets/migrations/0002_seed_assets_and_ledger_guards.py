"""Seed the assets and system accounts; install the ledger's database guards.

Guards (the backstop behind wallets/ledger.py):
- entries and ledger transactions are append-only: UPDATE and DELETE raise;
- every INSERT statement into entries must sum to zero per (transaction, asset) — the ledger
  writes all entries of its transactions in one statement;
- an entry's asset is its account's asset (composite foreign key; a set-based check since 0006).
"""

from django.db import migrations

ASSETS = [
    ("USDC", "USD Coin", 6, True),
    ("USDT", "Tether USD", 6, False),
    ("ETH", "Ether", 18, False),
    ("STRK", "Starknet Token", 18, False),
]
SYSTEM_ACCOUNTS = ["platform_revenue", "custody", "withdrawals_in_flight", "swap_liquidity"]


def seed(apps, schema_editor):
    Asset = apps.get_model("wallets", "Asset")
    Account = apps.get_model("wallets", "Account")
    for code, name, decimals, is_default in ASSETS:
        asset, _ = Asset.objects.get_or_create(
            code=code, defaults={"name": name, "decimals": decimals, "is_default": is_default}
        )
        for system_code in SYSTEM_ACCOUNTS:
            Account.objects.get_or_create(kind="system", system_code=system_code, asset=asset)


# The zero-sum check (migration 0006 widens it, and puts this one back when reversed).
BALANCED_FUNCTION = """
CREATE OR REPLACE FUNCTION wallets_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_entries GROUP BY transaction_id, asset_id HAVING SUM(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger entries must sum to zero per transaction and asset'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""

POSTGRES_GUARDS = (
    """
CREATE FUNCTION wallets_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER wallets_entry_append_only BEFORE UPDATE OR DELETE ON wallets_entry
    FOR EACH ROW EXECUTE FUNCTION wallets_refuse_change();
CREATE TRIGGER wallets_transaction_append_only BEFORE UPDATE OR DELETE ON wallets_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION wallets_refuse_change();
"""
    + BALANCED_FUNCTION
    + """
CREATE TRIGGER wallets_entry_balanced AFTER INSERT ON wallets_entry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION wallets_entries_balanced();

ALTER TABLE wallets_entry ADD CONSTRAINT wallets_entry_asset_is_accounts
    FOREIGN KEY (account_id, asset_id) REFERENCES wallets_account (id, asset_id);
"""
)

POSTGRES_GUARDS_REVERSE = """
ALTER TABLE wallets_entry DROP CONSTRAINT wallets_entry_asset_is_accounts;
DROP TRIGGER wallets_entry_balanced ON wallets_entry;
DROP FUNCTION wallets_entries_balanced();
DROP TRIGGER wallets_transaction_append_only ON wallets_ledgertransaction;
DROP TRIGGER wallets_entry_append_only ON wallets_entry;
DROP FUNCTION wallets_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("wallets", "0001_initial")]

    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunSQL([POSTGRES_GUARDS], [POSTGRES_GUARDS_REVERSE]),
    ]
