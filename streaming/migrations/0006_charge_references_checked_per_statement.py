"""Check a session charge's references once per INSERT statement instead of by a foreign key per row.

A sweep inserts a charge record for every session it charges. Their two foreign keys (to the
session, and to the ledger transaction) were deferred to the commit, where each ran a lookup and
a row lock per record: 1.5 s of the 12 s that the writes of a 100,000-session sweep took as plain
SQL (the bench's data, see docs/benchmarks.md). The same guarantees now come
from set-based checks, as for the ledger's entries (wallets 0006):
- a statement trigger refuses charge records whose session or ledger transaction does not exist,
  and share-locks the sessions named, as a foreign key does (a no-op on the sessions the sweep and
  stop have locked);
- a charge record is never re-pointed at another session or transaction;
- what a foreign key also prevents on the other side: a session with charges is not deleted and
  no session's id changes (a trigger below); a ledger transaction is never deleted nor changed
  (the ledger's append-only trigger, wallets 0002).

Two differences from foreign keys remain, both known: the delete guard reads with the deleting
statement's snapshot, which is exact under READ COMMITTED (PayGo's level: a charge being written
share-locks its session, so a delete waits for it and then sees it) but could miss a concurrent
charge under REPEATABLE READ; and TRUNCATE, which skips row triggers, is no longer refused by a
referencing key (Django's flush, which the tests use, truncates every table at once anyway).
"""

from django.db import migrations, models


GUARDS = """
CREATE FUNCTION streaming_charges_refer() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER streaming_charges_refer AFTER INSERT ON streaming_sessioncharge
    REFERENCING NEW TABLE AS new_charges
    FOR EACH STATEMENT EXECUTE FUNCTION streaming_charges_refer();

CREATE FUNCTION streaming_charge_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.session_id <> OLD.session_id OR NEW.ledger_transaction_id <> OLD.ledger_transaction_id THEN
        RAISE EXCEPTION 'a session charge keeps its session and ledger transaction'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER streaming_charge_keep BEFORE UPDATE OF session_id, ledger_transaction_id
    ON streaming_sessioncharge FOR EACH ROW EXECUTE FUNCTION streaming_charge_keep();

CREATE FUNCTION streaming_session_keep() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER streaming_session_keep BEFORE DELETE OR UPDATE OF id ON streaming_streamingsession
    FOR EACH ROW EXECUTE FUNCTION streaming_session_keep();
"""

GUARDS_REVERSE = """
DROP TRIGGER streaming_session_keep ON streaming_streamingsession;
DROP FUNCTION streaming_session_keep();
DROP TRIGGER streaming_charge_keep ON streaming_sessioncharge;
DROP FUNCTION streaming_charge_keep();
DROP TRIGGER streaming_charges_refer ON streaming_sessioncharge;
DROP FUNCTION streaming_charges_refer();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("streaming", "0005_sessions_half_empty_pages"),
        ("wallets", "0006_entry_references_checked_per_statement"),
    ]

    operations = [
        migrations.AlterField(
            model_name="sessioncharge",
            name="session",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=models.deletion.PROTECT,
                related_name="charges",
                to="streaming.streamingsession",
            ),
        ),
        migrations.AlterField(
            model_name="sessioncharge",
            name="ledger_transaction",
            field=models.OneToOneField(
                db_constraint=False,
                on_delete=models.deletion.PROTECT,
                related_name="session_charge",
                to="wallets.ledgertransaction",
            ),
        ),
        migrations.RunSQL([GUARDS], [GUARDS_REVERSE]),
    ]
