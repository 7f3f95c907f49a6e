-- wallets_post(): the ledger's posting, in one statement. wallets/ledger.py calls it for every
-- posting, a single transfer or a sweep's batch of charges, with the batch as JSON documents;
-- the sweep's batch function (streaming/sql/sweep_batch.sql), already in the database, calls
-- wallets_post_arrays(), which is the posting itself, with the same batch as arrays.
--
-- It locks every account involved in the one lock order (wallets_lock_accounts below), checks the
-- batch (known accounts, holds, funds, unused references) and only then writes the transactions,
-- their entries, the cached balances and the holds, each statement bounded to the batch's rows.
-- All of it runs in a subtransaction: a refusal, whether a check here finds it or a guard of the
-- database does (ledger_guards.sql: a reference taken by a concurrent posting since the check,
-- entries that balance in total but not per asset), rolls back what was written and the locks
-- that were taken, and is returned as a value. The caller's transaction stays usable. Any other error a guard raises is raised.
--
-- What runs is this file, whole. A migration installs it from a frozen copy of it, kept beside
-- the migration (wallets/migrations/sql/NNNN_wallets_post.sql); a test checks that this file
-- equals the latest copy. To change the rule: edit this file, copy it beside a new migration that
-- loads the copy (the reverse loads the previous copy).

-- The one order in which anything locks accounts: users' wallets in id order, then system accounts
-- in id order. Every posting (and ledger.lock_accounts, and the sweep's batch) locks through it, so
-- no two wait for each other in a cycle. The system accounts come last because many postings
-- share them (every charge credits platform revenue): taken last, each is held only from the
-- posting's writes to its commit, not while the posting's caller reads and decides (a sweep's
-- batch locks its wallets through it first, and the revenue account only as it posts).
CREATE OR REPLACE FUNCTION wallets_lock_accounts(p_ids bigint[]) RETURNS SETOF wallets_account
LANGUAGE sql AS $$
    SELECT * FROM wallets_account WHERE id = ANY (p_ids) ORDER BY kind = 'system', id FOR UPDATE
$$;

-- The posting: transactions (kind, reference, memo, created_by, metadata), entries (n, the 1-based
-- transaction; account; amount; and for a metering charge its session, billed from, billed until,
-- fee, else NULLs), and hold changes (hold, account, delta, "released" | "captured" | NULL), each
-- as arrays of one value per row.
CREATE OR REPLACE FUNCTION wallets_post_arrays(
    p_now timestamptz,
    v_kind varchar[], v_reference varchar[], v_memo varchar[], v_created_by bigint[], v_metadata jsonb[],
    v_entry_tx integer[], v_entry_account bigint[], v_entry_amount numeric[], v_entry_session bigint[],
    v_entry_from timestamptz[], v_entry_until timestamptz[], v_entry_fee numeric[],
    v_hold bigint[], v_hold_account bigint[], v_hold_delta numeric[], v_hold_close varchar[],
    OUT tx_ids bigint[], OUT refused text, OUT refused_account bigint, OUT available numeric,
    OUT needed numeric, OUT taken_reference varchar
) LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint[];
    v_balance_delta numeric[];
    v_held_delta numeric[];
    v_locked integer;
    v_bad bigint;
    v_row record;
    v_constraint text;
    v_message text;
    v_sequence regclass := pg_get_serial_sequence('wallets_ledgertransaction', 'id')::regclass;
BEGIN
    -- Everything below runs in a block with an exception handler, that is a subtransaction: a
    -- refusal, found by a check or by a guard of the database, rolls back what the block wrote
    -- and the row locks it took, and comes back as a value. The caller's transaction goes on
    -- unharmed and holds no lock it did not hold before.
    BEGIN
        -- What each account's balance and held amount change by, in account id order.
        SELECT array_agg(d.id ORDER BY d.id), array_agg(d.b ORDER BY d.id), array_agg(d.h ORDER BY d.id)
        INTO v_id, v_balance_delta, v_held_delta
        FROM (
            SELECT x.id, sum(x.b) AS b, sum(x.h) AS h
            FROM (
                SELECT e.account AS id, e.amount AS b, 0::numeric AS h
                FROM unnest(v_entry_account, v_entry_amount) AS e(account, amount)
                UNION ALL
                SELECT c.account, 0::numeric, c.delta FROM unnest(v_hold_account, v_hold_delta) AS c(account, delta)
            ) AS x
            GROUP BY x.id
        ) AS d;

        -- Lock them in the one order, then check the funds of the locked rows: no account holds
        -- less than nothing, no user account spends what it lacks.
        SELECT count(*), min(a.id) FILTER (
            WHERE a.held + d.h < 0 OR (a.kind = 'user' AND a.balance + d.b < a.held + d.h)
        )
        INTO v_locked, v_bad
        FROM wallets_lock_accounts(v_id) AS a
        JOIN unnest(v_id, v_balance_delta, v_held_delta) AS d(id, b, h) ON d.id = a.id;
        IF v_locked <> cardinality(v_id) THEN
            refused := 'unknown_account';
            SELECT min(d) INTO refused_account FROM unnest(v_id) AS d
            WHERE NOT EXISTS (SELECT 1 FROM wallets_account WHERE id = d);
            RAISE EXCEPTION USING ERRCODE = 'LG001';
        END IF;

        -- Each hold changed once, active, on the account it says (locked above), never below
        -- zero, and empty when it is closed.
        IF cardinality(v_hold) > 0 THEN
            IF (SELECT count(DISTINCT c) FROM unnest(v_hold) AS c) <> cardinality(v_hold) OR (
                SELECT count(*) FROM wallets_hold AS h
                JOIN unnest(v_hold, v_hold_account, v_hold_delta, v_hold_close) AS c(id, account, delta, close)
                    ON c.id = h.id AND c.account = h.account_id AND h.id = ANY (v_hold)
                WHERE h.status = 'active' AND h.amount + c.delta >= 0 AND (c.close IS NULL OR h.amount + c.delta = 0)
            ) <> cardinality(v_hold) THEN
                refused := 'hold_not_active';
                RAISE EXCEPTION USING ERRCODE = 'LG001';
            END IF;
        END IF;

        IF v_bad IS NOT NULL THEN
            SELECT a.balance, a.held, d.b, d.h INTO v_row
            FROM wallets_account AS a JOIN unnest(v_id, v_balance_delta, v_held_delta) AS d(id, b, h) ON d.id = a.id
            WHERE a.id = v_bad;
            refused := CASE WHEN v_row.held + v_row.h < 0 THEN 'held_below_zero' ELSE 'insufficient_funds' END;
            refused_account := v_bad;
            -- What the account may spend: its free funds plus what this batch releases.
            available := greatest(0, v_row.balance - v_row.held + greatest(0, -v_row.h));
            needed := -v_row.b + greatest(0, v_row.h);
            RAISE EXCEPTION USING ERRCODE = 'LG001';
        END IF;

        IF cardinality(array_remove(v_reference, NULL)) > 0 THEN
            SELECT t.reference INTO taken_reference
            FROM wallets_ledgertransaction AS t
            WHERE t.reference = ANY (v_reference)
            LIMIT 1;
            IF FOUND THEN
                refused := 'duplicate_reference';
                RAISE EXCEPTION USING ERRCODE = 'LG001';
            END IF;
        END IF;

        -- Checked: write, each transaction under the id taken for it here. The table's ROW EXCLUSIVE
        -- lock first, which the INSERT would take only after the ids are drawn: whoever holds it may
        -- still commit a lower id than the highest committed, and the dashboards' rollup reads its
        -- holders to know up to which id every transaction has ended (dashboards/rollup.py).
        LOCK TABLE wallets_ledgertransaction IN ROW EXCLUSIVE MODE;
        tx_ids := ARRAY(SELECT nextval(v_sequence) FROM generate_series(1, cardinality(v_kind)));
        INSERT INTO wallets_ledgertransaction (id, kind, reference, memo, metadata, created_by_id, created_at)
        SELECT tx_ids[t.n], t.kind, t.reference, t.memo, t.metadata, t.created_by, p_now
        FROM unnest(v_kind, v_reference, v_memo, v_metadata, v_created_by)
            WITH ORDINALITY AS t(kind, reference, memo, metadata, created_by, n);
        -- Each entry carries its transaction's time (p_now), so that an account's history is read in
        -- order, and by date, from one index (wallets_entry_account_time).
        INSERT INTO wallets_entry (
            transaction_id, account_id, asset_id, amount, session_id, billed_from, billed_until, fee, created_at
        )
        SELECT tx_ids[e.n], e.account, a.asset_id, e.amount, e.session, e.billed_from, e.billed_until, e.fee, p_now
        FROM unnest(v_entry_tx, v_entry_account, v_entry_amount, v_entry_session, v_entry_from, v_entry_until, v_entry_fee)
            AS e(n, account, amount, session, billed_from, billed_until, fee)
        JOIN wallets_account AS a ON a.id = e.account AND a.id = ANY (v_id);
        UPDATE wallets_account AS a SET balance = a.balance + d.b, held = a.held + d.h
        FROM unnest(v_id, v_balance_delta, v_held_delta) AS d(id, b, h)
        WHERE a.id = d.id AND a.id = ANY (v_id);
        IF cardinality(v_hold) > 0 THEN
            UPDATE wallets_hold AS h SET amount = h.amount + c.delta, status = coalesce(c.close, h.status),
                updated_at = p_now
            FROM unnest(v_hold, v_hold_delta, v_hold_close) AS c(id, delta, close)
            WHERE h.id = c.id AND h.id = ANY (v_hold);
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'LG001' THEN
            tx_ids := NULL;  -- the refusal set above says which
        WHEN unique_violation THEN
            -- A reference taken by a concurrent posting that committed after the check above.
            GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
            IF v_constraint IS DISTINCT FROM 'wallets_tx_reference_unique' THEN
                RAISE;
            END IF;
            tx_ids := NULL;
            refused := 'duplicate_reference';
            SELECT t.reference INTO taken_reference
            FROM wallets_ledgertransaction AS t WHERE t.reference = ANY (v_reference) LIMIT 1;
        WHEN check_violation THEN
            -- The entries' trigger: a transaction balanced in total but not per asset.
            GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
            IF v_message NOT LIKE '%sum to zero%' THEN
                RAISE;
            END IF;
            tx_ids := NULL;
            refused := 'unbalanced';
    END;
END $$;

CREATE OR REPLACE FUNCTION wallets_post(
    p_now timestamptz,
    j_transactions jsonb, j_entries jsonb, j_holds jsonb,
    OUT tx_ids bigint[], OUT refused text, OUT refused_account bigint, OUT available numeric,
    OUT needed numeric, OUT taken_reference varchar
) LANGUAGE plpgsql AS $$
DECLARE
    v_kind varchar[];
    v_reference varchar[];
    v_memo varchar[];
    v_created_by bigint[];
    v_metadata jsonb[];
    v_entry_tx integer[];
    v_entry_account bigint[];
    v_entry_amount numeric[];
    v_entry_session bigint[];
    v_entry_from timestamptz[];
    v_entry_until timestamptz[];
    v_entry_fee numeric[];
    v_hold bigint[];
    v_hold_account bigint[];
    v_hold_delta numeric[];
    v_hold_close varchar[];
BEGIN
    -- The batch arrives as JSON documents (parsed once each, into jsonb, where arrays of thousands of strings
    -- cost the client more to encode than the posting costs the server).
    -- Transactions: [[kind, reference, memo, created_by, metadata object], ...];
    -- entries: [[n (1-based transaction), account, amount], ...], a metering charge's with four more:
    --   [n, account, amount, session, billed from, billed until, fee] (the debit that is the
    --   session's charge record; streaming/sql/charge_guards.sql checks the session);
    -- holds: [[hold, account, delta, "released" | "captured" | null], ...].
    SELECT coalesce(array_agg(t->>0 ORDER BY n), '{}'), coalesce(array_agg(t->>1 ORDER BY n), '{}'),
           coalesce(array_agg(t->>2 ORDER BY n), '{}'), coalesce(array_agg((t->>3)::bigint ORDER BY n), '{}'),
           coalesce(array_agg(t->4 ORDER BY n), '{}')
    INTO v_kind, v_reference, v_memo, v_created_by, v_metadata
    FROM jsonb_array_elements(j_transactions) WITH ORDINALITY AS x(t, n);
    SELECT coalesce(array_agg((e->>0)::integer ORDER BY n), '{}'), coalesce(array_agg((e->>1)::bigint ORDER BY n), '{}'),
           coalesce(array_agg((e->>2)::numeric ORDER BY n), '{}'),
           coalesce(array_agg((e->>3)::bigint ORDER BY n), '{}'),
           coalesce(array_agg((e->>4)::timestamptz ORDER BY n), '{}'),
           coalesce(array_agg((e->>5)::timestamptz ORDER BY n), '{}'),
           coalesce(array_agg((e->>6)::numeric ORDER BY n), '{}')
    INTO v_entry_tx, v_entry_account, v_entry_amount, v_entry_session, v_entry_from, v_entry_until, v_entry_fee
    FROM jsonb_array_elements(j_entries) WITH ORDINALITY AS x(e, n);
    IF jsonb_array_length(j_holds) > 0 THEN
        SELECT array_agg((c->>0)::bigint ORDER BY n), array_agg((c->>1)::bigint ORDER BY n),
               array_agg((c->>2)::numeric ORDER BY n), array_agg(c->>3 ORDER BY n)
        INTO v_hold, v_hold_account, v_hold_delta, v_hold_close
        FROM jsonb_array_elements(j_holds) WITH ORDINALITY AS x(c, n);
    ELSE
        v_hold := '{}';
        v_hold_account := '{}';
        v_hold_delta := '{}';
        v_hold_close := '{}';
    END IF;

    SELECT p.* INTO tx_ids, refused, refused_account, available, needed, taken_reference
    FROM wallets_post_arrays(
        p_now, v_kind, v_reference, v_memo, v_created_by, v_metadata, v_entry_tx, v_entry_account, v_entry_amount,
        v_entry_session, v_entry_from, v_entry_until, v_entry_fee, v_hold, v_hold_account, v_hold_delta, v_hold_close
    ) AS p;
END $$;
