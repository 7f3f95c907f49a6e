-- The ledger's guards in the database: the backstop behind wallets/ledger.py (and wallets_post).
--
-- - Entries and ledger transactions are append-only: UPDATE and DELETE raise.
-- - Every INSERT statement into entries sums to zero per (transaction, asset): the ledger writes
--   all entries of its transactions in one statement.
-- - An entry's references are checked once per INSERT statement rather than by a foreign key per
--   row (a fifth of a billing sweep's cost): its transaction exists, its account exists and holds
--   the entry's asset, and it carries its transaction's time (created_at, copied so that an
--   account's history is read from one index). What a foreign key also prevents on the other side holds too: a ledger
--   transaction is never deleted (append-only), an account with entries is never deleted, and no
--   account's id or asset ever changes. The statement trigger share-locks the accounts its entries
--   name, as a foreign key does, so that a delete cannot race an insert.
--
-- What runs is this file, whole. A migration installs it from a frozen copy of it, kept beside
-- the migration (wallets/migrations/sql/NNNN_ledger_guards.sql); a test checks that this file
-- equals the latest copy. To change the rule: edit this file, copy it beside a new migration that
-- loads the copy (the reverse loads the previous copy).

-- Append-only.
CREATE OR REPLACE FUNCTION wallets_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE OR REPLACE TRIGGER wallets_entry_append_only BEFORE UPDATE OR DELETE ON wallets_entry
    FOR EACH ROW EXECUTE FUNCTION wallets_refuse_change();
CREATE OR REPLACE TRIGGER wallets_transaction_append_only BEFORE UPDATE OR DELETE ON wallets_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION wallets_refuse_change();

-- Balanced per transaction and asset; references checked per statement, each in one pass: the
-- accounts named are share-locked and checked by the same look-up (the statement's distinct
-- (account, asset) pairs joined to the accounts that hold that asset: every pair must find its
-- row), and the transactions named are looked up once each, not once per entry.
CREATE OR REPLACE FUNCTION wallets_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_named bigint;
    v_found bigint;
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_entries GROUP BY transaction_id, asset_id HAVING SUM(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger entries must sum to zero per transaction and asset'
            USING ERRCODE = 'check_violation';
    END IF;
    -- What a foreign key would do: share-lock the accounts named, so that none is deleted
    -- before this transaction ends (a no-op on the rows the ledger's posting has locked).
    SELECT count(*) INTO v_named FROM (SELECT DISTINCT account_id, asset_id FROM new_entries) AS e;
    SELECT count(*) INTO v_found FROM (
        SELECT 1
        FROM (SELECT DISTINCT account_id, asset_id FROM new_entries) AS e
        JOIN wallets_account AS a ON a.id = e.account_id AND a.asset_id = e.asset_id
        FOR KEY SHARE OF a
    ) AS found;
    IF v_found <> v_named THEN
        RAISE EXCEPTION 'a ledger entry names an unknown account, or one that holds another asset'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM (SELECT DISTINCT transaction_id, created_at FROM new_entries) AS e
        WHERE NOT EXISTS (
            SELECT 1 FROM wallets_ledgertransaction AS t WHERE t.id = e.transaction_id AND t.created_at = e.created_at
        )
    ) THEN
        RAISE EXCEPTION 'a ledger entry names an unknown transaction, or not its transaction''s time'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER wallets_entry_balanced AFTER INSERT ON wallets_entry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION wallets_entries_balanced();

-- An account with entries keeps its id and asset, and is never deleted.
CREATE OR REPLACE FUNCTION wallets_account_keep() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE TRIGGER wallets_account_keep BEFORE DELETE OR UPDATE OF id, asset_id ON wallets_account
    FOR EACH ROW EXECUTE FUNCTION wallets_account_keep();
