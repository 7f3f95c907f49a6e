-- The charges' guards. A session's charge is a ledger entry: the debit of its payer that carries
-- the session, the interval it bills and the fee (wallets_entry.session_id, billed_from,
-- billed_until, fee; a sweep's batch posts one per charged session in one ledger transaction).
--
-- - A statement trigger on the entries refuses charges whose session does not exist or whose
--   account is not that session's payer, checked once per INSERT statement instead of by a
--   foreign key per row, and share-locks the sessions named, as a foreign key does (a no-op on
--   the sessions the sweep and stop have locked), with the same one look-up per session.
-- - An entry never changes nor goes away (the ledger's append-only trigger,
--   wallets/sql/ledger_guards.sql).
-- - What a foreign key also prevents on the other side: a session with charges is not deleted and
--   no session's id changes.
--
-- Two differences from foreign keys remain, both known: the delete guard reads with the deleting
-- statement's snapshot, which is exact under READ COMMITTED (PayGo's level: a charge being
-- written share-locks its session, so a delete waits for it and then sees it) but could miss a
-- concurrent charge under REPEATABLE READ; and TRUNCATE, which skips row triggers, is not refused
-- (Django's flush, which the tests use, truncates every table at once anyway).
--
-- What runs is this file, whole. A migration installs it from a frozen copy of it, kept beside
-- the migration (streaming/migrations/sql/NNNN_charge_guards.sql); a test checks that this file
-- equals the latest copy. To change the rule: edit this file, copy it beside a new migration that
-- loads the copy (the reverse loads the previous copy).

CREATE OR REPLACE FUNCTION streaming_charges_refer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_named bigint;
    v_found bigint;
BEGIN
    -- One look-up per session named, which share-locks it and checks it: the statement's distinct
    -- (session, account) pairs joined to the sessions whose payer is that account; every pair
    -- must find its row (a session named with two accounts, or unknown, leaves one unfound).
    SELECT count(*) INTO v_named
    FROM (SELECT DISTINCT session_id, account_id FROM new_entries WHERE session_id IS NOT NULL) AS e;
    SELECT count(*) INTO v_found FROM (
        SELECT 1
        FROM (SELECT DISTINCT session_id, account_id FROM new_entries WHERE session_id IS NOT NULL) AS e
        JOIN streaming_streamingsession AS s ON s.id = e.session_id AND s.payer_account_id = e.account_id
        FOR KEY SHARE OF s
    ) AS found;
    IF v_found <> v_named THEN
        RAISE EXCEPTION 'a charge names an unknown session, or debits another account than its payer''s'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER streaming_charges_refer AFTER INSERT ON wallets_entry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION streaming_charges_refer();

CREATE OR REPLACE FUNCTION streaming_session_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'a session''s id never changes' USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM wallets_entry WHERE session_id = OLD.id) THEN
        RAISE EXCEPTION 'session % has charges: it cannot be deleted', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END $$;

CREATE OR REPLACE TRIGGER streaming_session_keep BEFORE DELETE OR UPDATE OF id ON streaming_streamingsession
    FOR EACH ROW EXECUTE FUNCTION streaming_session_keep();
