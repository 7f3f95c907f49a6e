-- The default token (the one a request that names no token uses) exists whenever any token does.
--
-- Its other two rules are the table's constraints: wallets_one_default_asset (a unique index)
-- keeps it to one, wallets_default_asset_active (a check) keeps it active. This trigger keeps
-- there from being none: without it, a write that unset the default and set no other (an admin
-- save that wrote back the is_default it had read before the default moved to its token) left
-- every request naming no token to fail. It is checked when the transaction commits (deferred),
-- so that wallets.services.asset_make_default may unset the old default before it sets the new
-- one (the other way round, the unique index refuses); such a write fails at commit instead,
-- and nothing of it stays.
--
-- What runs is this file, whole. A migration installs it from a frozen copy of it, kept beside
-- the migration (wallets/migrations/sql/NNNN_default_asset.sql); a test checks that this file
-- equals the latest copy. To change the rule: edit this file, copy it beside a new migration that
-- loads the copy (the reverse loads the previous copy).

CREATE OR REPLACE FUNCTION wallets_default_asset_exists() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM wallets_asset) AND NOT EXISTS (SELECT 1 FROM wallets_asset WHERE is_default) THEN
        RAISE EXCEPTION 'no default token: make another token the default rather than unset this one'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'wallets_default_asset_exists';
    END IF;
    RETURN NULL;
END $$;

-- A constraint trigger cannot be created OR REPLACE.
DROP TRIGGER IF EXISTS wallets_default_asset_exists ON wallets_asset;
CREATE CONSTRAINT TRIGGER wallets_default_asset_exists
    AFTER INSERT OR UPDATE OF is_default OR DELETE ON wallets_asset
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION wallets_default_asset_exists();
