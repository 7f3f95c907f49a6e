-- The session charges' guards: a charge record's references checked once per INSERT statement
-- instead of by a foreign key per row (a sweep inserts one per charged session).
--
-- - A statement trigger refuses charge records whose session or ledger transaction does not exist,
--   and share-locks the sessions named, as a foreign key does (a no-op on the sessions the sweep
--   and stop have locked).
-- - A charge record is never re-pointed at another session or transaction.
-- - What a foreign key also prevents on the other side: a session with charges is not deleted and
--   no session's id changes; a ledger transaction is never deleted nor changed (the ledger's
--   append-only trigger, wallets/sql/ledger_guards.sql).
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
BEGIN
    PERFORM 1 FROM streaming_streamingsession WHERE id IN (SELECT DISTINCT session_id FROM new_charges)
        FOR KEY SHARE;
    IF EXISTS (
        SELECT 1 FROM new_charges AS c
        LEFT JOIN streaming_streamingsession AS s ON s.id = c.session_id
        LEFT JOIN wallets_ledgertransaction AS t ON t.id = c.ledger_transaction_id
        WHERE s.id IS NULL OR t.id IS NULL
    ) THEN
        RAISE EXCEPTION 'a session charge names an unknown session or ledger transaction'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER streaming_charges_refer AFTER INSERT ON streaming_sessioncharge
    REFERENCING NEW TABLE AS new_charges
    FOR EACH STATEMENT EXECUTE FUNCTION streaming_charges_refer();

CREATE OR REPLACE FUNCTION streaming_charge_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.session_id <> OLD.session_id OR NEW.ledger_transaction_id <> OLD.ledger_transaction_id THEN
        RAISE EXCEPTION 'a session charge keeps its session and ledger transaction'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER streaming_charge_keep BEFORE UPDATE OF session_id, ledger_transaction_id
    ON streaming_sessioncharge FOR EACH ROW EXECUTE FUNCTION streaming_charge_keep();

CREATE OR REPLACE FUNCTION streaming_session_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'a session''s id never changes' USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM streaming_sessioncharge WHERE session_id = OLD.id) THEN
        RAISE EXCEPTION 'session % has charges: it cannot be deleted', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END $$;

CREATE OR REPLACE TRIGGER streaming_session_keep BEFORE DELETE OR UPDATE OF id ON streaming_streamingsession
    FOR EACH ROW EXECUTE FUNCTION streaming_session_keep();
