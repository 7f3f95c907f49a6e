-- streaming_bill(): what billing decides and writes for a batch of sessions, in one call. The
-- sweep calls it for each batch and a stop for its one session (streaming/billing.py); Python
-- keeps the orchestration, and publishes and notifies what it returns once committed.
--
-- It claims the sessions (the sweep's next batch after p_after in id order, FOR UPDATE SKIP
-- LOCKED: rows someone else holds are left to the run's last pass, streaming_unbilled below; a
-- stop's sessions, or that last pass's, p_ids, waiting for their locks; a shard's, the sessions of
-- its vendors' wallets), locks their wallets (the platform's revenue accounts only as it
-- posts), and decides for each
-- (streaming_decide below), set-based, from its locked state (../shared/DESIGN.md, Metering; the
-- arithmetic of streaming/sql/metering.sql):
-- - due(t) = floor(rate * billable_ms(t) / unit_ms), or rate * quantity / unit for usage; a charge
--   takes due(until) - metered_cost, `until` being now, or its stop;
-- - a session stops when asked (p_stop_reason), when its money or maxCost ran out before (stop_at),
--   or when it has had no sign of life for p_idle_ms: then at the instant that timeout ran out,
--   whoever asks later (the earliest of the three wins); the money's stop_at only while the
--   session has no more than its hold to spend: topped up since it was told, it goes on;
-- - the funds a session may use are its hold plus its wallet's free balance, shared by the payer's
--   sessions of the batch in id order: each gets what the ones before it left; when they or
--   maxCost cannot pay what is due, it stops at the exact instant they ran out, charged up to it;
--   a session stopped by its user's side (the user, silence, its money or maxCost running out)
--   pays the rest of its minimum charge out of what is there and within maxCost; one the vendor or
--   staff stop pays the time used only;
-- - a running session's hold is renewed for the coming period (p_period_ms) and the rest of its
--   minimum charge (its stop may yet be the user's); when that period cannot be covered in full,
--   it is told when it will stop (stop_at) and holds all it has left;
-- - what its payer has left (the wallet's free balance and the holds of the payer's sessions of
--   the batch, after it) and its runway: how long that lasts at what the payer's running
--   time-metered sessions of the batch spend together, no longer than its maxCost allows; its
--   low-balance level (1: that runway, maxCost aside, under 5 minutes, 2: under 1 minute) is kept,
--   and a rise is returned once per crossing. A payer's sessions in other batches (far apart in id
--   order) or shards (other vendors) are not counted: their holds are theirs, but what they will
--   take of the free balance is not, and the runway is then longer than it will be.
-- It then posts ONE ledger transaction through wallets_post_arrays (wallets/sql/wallets_post.sql):
-- a debit per charged session (its charge record: the session, the interval it bills, the fee), a
-- credit per vendor account, a fee credit to platform revenue per asset, and every hold change,
-- after updating the sessions in one statement; and returns a row per session claimed.
--
-- Charges are cumulative (due(until) - charged so far), and the session's row, locked, is the
-- claim: a sweep that runs twice, concurrently or after a crash, charges each period once.
--
-- Every statement reads only the batch's rows, by primary key (`id = ANY (ids)` on each table it
-- reads): a join left to find them would hash a whole table for each batch, and a sweep would cost
-- O(sessions x batches).
--
-- What runs is this file, whole. A migration installs it from a frozen copy of it, kept beside
-- the migration (streaming/migrations/sql/NNNN_sweep_batch.sql); a test checks that this file
-- equals the latest copy. To change the rule: edit this file, copy it beside a new migration that
-- loads the copy (the reverse loads the previous copy).

DROP FUNCTION IF EXISTS streaming_bill(
    timestamptz, bigint[], varchar, bigint, integer, integer, integer, bigint, bigint, integer
);
DROP FUNCTION IF EXISTS streaming_unbilled(timestamptz, integer, integer);
DROP TYPE IF EXISTS streaming_bill_session CASCADE;  -- and streaming_decide, which takes it
DROP TYPE IF EXISTS streaming_bill_outcome;

-- A claimed session as billing reads it, under its locks: the session, its hold, and its wallet's
-- free balance (balance - held) before the batch.
CREATE TYPE streaming_bill_session AS (
    id bigint, session_id text, user_id bigint, vendor_id bigint, service_id bigint, asset_id bigint,
    payer bigint, payee bigint, hold_id bigint, unit varchar, rate numeric, free_seconds integer,
    minimum_charge numeric, max_cost numeric, start_time timestamptz, charged_until timestamptz,
    metered_cost numeric, total_cost numeric, usage_quantity numeric, stop_at timestamptz,
    stop_at_reason varchar, last_heartbeat_at timestamptz, alert_level integer, hold numeric, free numeric
);

-- What billing decided for one session.
CREATE TYPE streaming_bill_outcome AS (
    until timestamptz, metered numeric, charge numeric, fee numeric, new_hold numeric, remaining numeric,
    stop_reason varchar, stop_time timestamptz, stop_at_new timestamptz, stop_at_reason_new varchar,
    level integer, runway_ms numeric, crossed boolean
);

-- The decision for each session of a batch (sorted by payer and id), given the funds it may use
-- (p_funds, by position): a row per session, in the same order, with the session's payer, hold
-- and funds beside its outcome. One query over the batch, each step a subquery that the planner
-- keeps (OFFSET 0): merged, every use of a value would compute it again, and the next step's
-- uses of those, and so on.
CREATE FUNCTION streaming_decide(
    p_sessions streaming_bill_session[], p_funds numeric[], p_now timestamptz, p_stopping boolean,
    p_stop_reason varchar, p_period_ms bigint, p_idle_ms bigint, p_fee_bps integer
) RETURNS TABLE (
    id bigint, payer bigint, hold numeric, free numeric, funds numeric, outcome streaming_bill_outcome
) LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH a AS (
        -- The session's units; what is left under its maxCost; its `now` (a stop never goes back).
        SELECT s.*, s.unnest AS funds,
               CASE s.unit WHEN 'per_second' THEN 1000 WHEN 'per_minute' THEN 60000
                           WHEN 'per_hour' THEN 3600000 END::bigint AS unit_ms,
               CASE s.unit WHEN 'per_gb' THEN 1000000000 WHEN 'per_request' THEN 1
                           WHEN 'per_transaction' THEN 1 END::bigint AS uq,
               s.free_seconds::bigint * 1000 AS free_ms,
               CASE WHEN s.max_cost IS NOT NULL THEN greatest(0, s.max_cost - s.total_cost) END AS cap,
               CASE WHEN p_stopping THEN greatest(p_now, s.charged_until) ELSE p_now END AS now,
               s.last_heartbeat_at + p_idle_ms * interval '1 millisecond' AS idle_at
        FROM unnest(p_sessions, p_funds) AS s
        OFFSET 0
    ), b AS (
        -- When it stops, if it does: at the earliest of the instant its money (or maxCost) ran out,
        -- the instant its idle timeout ran out (silent all that time) and now if it is asked to
        -- stop. An end that came before is where it ended, whoever asks later: silence costs the
        -- timeout whether a sweep or a stop comes first. On a tie: money, then idle, then the stop
        -- asked for. It is billed up to then, never back before charged_until. The money's stop_at
        -- was reckoned from the funds of then, all of them held: with more to spend now (a top-up)
        -- it is reckoned again below, from what there is (maxCost's never moves).
        SELECT a.*,
               CASE WHEN a.stop_at <= least(a.now, a.idle_at) AND (a.stop_at_reason = 'max_cost' OR a.funds <= a.hold)
                        THEN coalesce(nullif(a.stop_at_reason, ''), 'insufficient_funds')
                    WHEN a.idle_at <= a.now THEN 'idle'
                    WHEN p_stop_reason IS NOT NULL THEN p_stop_reason END::varchar AS reason0,
               greatest(a.charged_until,
                        CASE WHEN a.stop_at <= least(a.now, a.idle_at) AND (a.stop_at_reason = 'max_cost' OR a.funds <= a.hold)
                                 THEN a.stop_at
                             WHEN a.idle_at <= a.now THEN a.idle_at
                             ELSE a.now END) AS until0
        FROM a
        OFFSET 0
    ), c AS (
        -- What is due, and what can be paid.
        SELECT b.*,
               greatest(0, CASE
                   WHEN b.unit_ms IS NOT NULL THEN streaming_time_due(
                       b.rate, b.unit_ms, streaming_elapsed_ms(b.start_time, b.until0), b.free_ms)
                   WHEN b.uq IS NOT NULL THEN streaming_usage_due(b.rate, b.uq, b.usage_quantity)
                   ELSE 0 END - b.metered_cost) AS metered0,
               CASE WHEN b.cap IS NULL THEN b.funds ELSE least(b.funds, b.cap) END AS lim
        FROM b
        OFFSET 0
    ), d AS (
        -- When the funds or maxCost cannot pay it, it stops at the exact instant they ran out
        -- (time), or with what they could pay (usage).
        SELECT c.*, c.metered0 > c.lim AS short,
               CASE WHEN c.metered0 > c.lim AND c.unit_ms IS NOT NULL THEN least(greatest(
                   c.start_time + streaming_last_affordable_ms(c.rate, c.unit_ms, c.free_ms, c.metered_cost + c.lim)
                       * interval '1 millisecond',
                   c.charged_until), c.until0)
               ELSE c.until0 END AS until1
        FROM c
        OFFSET 0
    ), e AS (
        SELECT d.*,
               CASE WHEN NOT d.short THEN d.metered0
                    WHEN d.unit_ms IS NOT NULL THEN streaming_time_due(
                        d.rate, d.unit_ms, streaming_elapsed_ms(d.start_time, d.until1), d.free_ms) - d.metered_cost
                    ELSE d.lim END AS metered1,
               CASE WHEN NOT d.short THEN d.reason0
                    WHEN d.cap IS NOT NULL AND d.cap <= d.funds THEN 'max_cost'
                    ELSE 'insufficient_funds' END::varchar AS reason1
        FROM d
        OFFSET 0
    ), f AS (
        -- The minimum charge is what a user owes for ending a session early: a session stopped by
        -- its user's side (the user, the user's silence, its money or maxCost running out) pays the
        -- rest of it out of what is there, within maxCost; one the vendor or staff stop pays the
        -- time used only. A running one renews its hold for the coming period and the rest of its
        -- minimum charge (held at its start: released, the wallet could be emptied before a stop
        -- that may yet be the user's), out of what remains and within maxCost (its budget).
        SELECT e.*,
               greatest(0, e.minimum_charge - e.total_cost - e.metered1) AS minimum_rest,
               e.metered1 + CASE WHEN e.reason1 IN ('user', 'idle', 'insufficient_funds', 'max_cost')
                                      AND e.minimum_charge - e.total_cost - e.metered1 > 0
                                 THEN greatest(0, least(e.minimum_charge - e.total_cost - e.metered1,
                                                        e.funds - e.metered1, e.cap - e.metered1))
                                 ELSE 0 END AS final_charge,
               e.funds - e.metered1 AS left_over,
               CASE WHEN e.unit_ms IS NOT NULL THEN streaming_period_cost(e.rate, e.unit_ms, p_period_ms)
                    WHEN e.uq IS NOT NULL THEN e.rate
                    ELSE 0 END AS need,
               e.max_cost - e.total_cost - e.metered1 AS cap_left,
               CASE WHEN e.max_cost - e.total_cost - e.metered1 <= e.funds - e.metered1
                    THEN e.max_cost - e.total_cost - e.metered1 ELSE e.funds - e.metered1 END AS budget,
               CASE WHEN e.max_cost - e.total_cost - e.metered1 <= e.funds - e.metered1
                    THEN 'max_cost' ELSE 'insufficient_funds' END::varchar AS budget_reason
        FROM e
        OFFSET 0
    ), g AS (
        -- A time-metered session that cannot cover the coming period in full is told when it will
        -- stop, and holds all it has left until then. What its payer has left, the same for each
        -- of the payer's sessions of the batch: the wallet's free balance and these sessions'
        -- holds, less what they are charged; and what the payer's running time-metered ones
        -- spend together, an hour (every unit divides one).
        SELECT f.*,
               f.reason1 IS NULL AND f.unit_ms IS NOT NULL AND f.budget < f.need AS running_out,
               CASE WHEN f.reason1 IS NOT NULL THEN f.final_charge ELSE f.metered1 END AS charge,
               f.free + sum(f.hold - CASE WHEN f.reason1 IS NOT NULL THEN f.final_charge ELSE f.metered1 END)
                   OVER payer AS payer_left,
               sum(CASE WHEN f.reason1 IS NULL AND f.unit_ms IS NOT NULL
                        THEN f.rate * (3600000 / f.unit_ms) ELSE 0 END) OVER payer AS payer_rate_hour
        FROM f
        WINDOW payer AS (PARTITION BY f.payer)
        OFFSET 0
    )
    -- A running time-metered session's runway (r): how long what its payer has left lasts at what
    -- its running sessions spend together; its alert level comes from that alone (a low balance is
    -- the wallet's), and what it tells its user is no longer than what maxCost leaves.
    SELECT g.id, g.payer, g.hold, g.free, g.funds, ROW(
        g.until1,
        g.metered1,
        g.charge,
        streaming_platform_fee(g.charge, p_fee_bps),
        CASE WHEN g.reason1 IS NOT NULL THEN 0
             WHEN g.running_out THEN g.budget
             ELSE least(g.need + g.minimum_rest, g.left_over, g.cap_left) END,
        g.payer_left,
        g.reason1,
        CASE WHEN g.reason1 IS NOT NULL THEN g.until1 END,
        CASE WHEN g.running_out THEN g.start_time + streaming_last_affordable_ms(
            g.rate, g.unit_ms, g.free_ms, g.metered_cost + g.metered1 + g.budget) * interval '1 millisecond' END,
        CASE WHEN g.running_out THEN g.budget_reason ELSE '' END,
        coalesce((r.funds_runway < 300000)::integer + (r.funds_runway < 60000)::integer, 0),
        CASE WHEN r.funds_runway IS NULL OR g.max_cost IS NULL THEN r.funds_runway
             ELSE least(r.funds_runway, streaming_runway_ms(g.rate, g.unit_ms, g.cap_left)) END,
        coalesce((r.funds_runway < 300000)::integer + (r.funds_runway < 60000)::integer, 0) > g.alert_level
    )::streaming_bill_outcome
    FROM g,
         LATERAL (SELECT CASE WHEN g.reason1 IS NULL AND g.unit_ms IS NOT NULL AND g.rate > 0 THEN
                      streaming_runway_ms(g.payer_rate_hour, 3600000, g.payer_left)
                  END AS funds_runway) AS r
    ORDER BY g.payer, g.id
$$;

CREATE FUNCTION streaming_bill(
    p_now timestamptz, p_ids bigint[], p_stop_reason varchar,
    p_after bigint, p_limit integer, p_shard integer, p_shards integer,
    p_period_ms bigint, p_idle_ms bigint, p_fee_bps integer
) RETURNS TABLE (
    id bigint, session_id text, user_id bigint, vendor_id bigint, service_name varchar, asset_id bigint,
    total_cost_before numeric, charge numeric, until timestamptz, new_hold numeric, remaining numeric,
    stop_reason varchar, stop_time timestamptz, stop_at timestamptz, runway_ms numeric,
    alert_crossed boolean
) LANGUAGE plpgsql
-- Every statement reads only the batch's rows (above): never a whole table. The planner, which
-- prices a random read at four sequential ones, would rather read all 100,000 holds than look up
-- 5,000 of them by id; each statement is planned for its arrays as they are (PL/pgSQL's generic
-- plan after the fifth call, made for arrays of unknown size, read the sessions with their holds
-- and wallets in 1.3 s instead of 0.06 s); and JIT compiling a statement took seconds for
-- milliseconds of work.
SET enable_seqscan = off SET plan_cache_mode = force_custom_plan SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_holds bigint[];
    v_accounts bigint[];
    v_assets bigint[];
    v_services bigint[];
    v_sessions streaming_bill_session[];
    v_funds numeric[];  -- what each session may use: its hold and what its payer's earlier ones left
    v_next numeric[];
    v_outcomes streaming_bill_outcome[];
    v_settled boolean;
    v_entry_account bigint[];  -- the batch's ledger entries, one value per entry
    v_entry_amount numeric[];
    v_entry_session bigint[];
    v_entry_from timestamptz[];
    v_entry_until timestamptz[];
    v_entry_fee numeric[];
    v_charged boolean;
    v_hold bigint[];  -- its hold changes
    v_hold_account bigint[];
    v_hold_delta numeric[];
    v_hold_close varchar[];
    v_post record;
BEGIN
    -- Claim. The sweep walks the active sessions' index in id order and skips what others hold;
    -- a stop waits for its sessions. A shard takes the sessions whose vendor's wallet (payee) is
    -- its own, by the wallet's id: two shards then credit no vendor's wallet in common, and one
    -- decides while the other posts (by session id, every batch of every shard credited the same
    -- vendors, and the shards billed in turns; a payer with sessions in two shards still makes
    -- them take turns). The batch must come from the active sessions' index, walked
    -- in id order and left after p_limit rows. A plain `s.payee_account_id % p_shards = p_shard`
    -- is estimated to keep 0.5% of the rows (PostgreSQL's guess for an equality on an
    -- expression); so few that the planner read every active session, sorted them and kept the
    -- first p_limit, for every batch (10x slower per batch at 100,000 sessions). Written as a
    -- CASE, the planner takes it to keep half the rows, closer to 1/p_shards, and walks the
    -- index. Then the ids of the rows billing reads next.
    IF p_ids IS NOT NULL THEN
        v_ids := ARRAY(
            SELECT s.id FROM streaming_streamingsession AS s
            WHERE s.id = ANY (p_ids) AND s.status = 'active'
            ORDER BY s.id FOR UPDATE
        );
    ELSE
        v_ids := ARRAY(
            SELECT s.id FROM streaming_streamingsession AS s
            WHERE s.status = 'active' AND s.id > p_after AND s.start_time <= p_now
              AND (p_shards <= 1 OR CASE WHEN s.payee_account_id % p_shards = p_shard THEN true ELSE false END)
            ORDER BY s.id LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        );
    END IF;
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(s.hold_id ORDER BY s.hold_id),
           array_agg(DISTINCT s.payer_account_id) || array_agg(DISTINCT s.payee_account_id),
           array_agg(DISTINCT s.asset_id), array_agg(DISTINCT s.service_id)
    INTO v_holds, v_accounts, v_assets, v_services
    FROM streaming_streamingsession AS s WHERE s.id = ANY (v_ids);

    -- Their wallets (payers' and payees'), locked now: deciding reads them. The revenue accounts of
    -- their assets are locked only as the batch posts, by wallets_post_arrays: every posting locks
    -- in the one order of wallets_lock_accounts (wallets/sql/wallets_post.sql), users' wallets
    -- first, system accounts last. Each batch credits them, so whoever holds them makes every
    -- other batch wait: a shard of the sweep waits for another's posting, not for its whole batch.
    PERFORM 1 FROM wallets_lock_accounts(v_accounts);
    v_accounts := v_accounts || ARRAY(
        SELECT a.id FROM wallets_account AS a
        WHERE a.kind = 'system' AND a.system_code = 'platform_revenue' AND a.asset_id = ANY (v_assets)
    );

    -- Read now, under the locks: the sessions as the last biller left them, their holds and
    -- wallets as they are; each payer's sessions together, in id order.
    v_sessions := ARRAY(
        SELECT ROW(
            s.id, s.session_id::text, s.user_id, s.vendor_id, s.service_id, s.asset_id, s.payer_account_id,
            s.payee_account_id, s.hold_id, s.unit, s.rate, s.free_seconds, s.minimum_charge, s.max_cost,
            s.start_time, s.charged_until, s.metered_cost, s.total_cost, s.usage_quantity, s.stop_at,
            s.stop_at_reason, s.last_heartbeat_at, s.alert_level, h.amount, a.balance - a.held
        )::streaming_bill_session
        FROM streaming_streamingsession AS s
        JOIN wallets_hold AS h ON h.id = s.hold_id AND h.id = ANY (v_holds)
        JOIN wallets_account AS a ON a.id = s.payer_account_id AND a.id = ANY (v_accounts)
        WHERE s.id = ANY (v_ids)
        ORDER BY s.payer_account_id, s.id
    );

    -- Decide. A session's funds are its hold plus what its payer's earlier sessions of the batch
    -- left of the free balance, and what it leaves depends on what it was given: all are decided
    -- at once, each with the funds the round before left it (the first round: the whole free
    -- balance), until no session's funds change. A round settles each payer's next session (the
    -- ones before it got what they get in the end), so this ends in at most one round more than
    -- a payer has sessions in the batch; in one round when no payer has two.
    v_funds := ARRAY(SELECT s.hold + s.free FROM unnest(v_sessions) WITH ORDINALITY AS s ORDER BY s.ordinality);
    LOOP
        SELECT array_agg(x.left_for_it ORDER BY x.payer, x.id), array_agg(x.outcome ORDER BY x.payer, x.id),
               bool_and(x.left_for_it = x.funds)
        INTO v_next, v_outcomes, v_settled
        FROM (
            SELECT d.id, d.payer, d.funds, d.outcome, d.hold + d.free - coalesce(sum(
                       (d.outcome).charge + (d.outcome).new_hold - d.hold
                   ) OVER (PARTITION BY d.payer ORDER BY d.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                   AS left_for_it
            FROM streaming_decide(
                v_sessions, v_funds, p_now, p_ids IS NOT NULL, p_stop_reason, p_period_ms, p_idle_ms, p_fee_bps
            ) AS d
        ) AS x;
        EXIT WHEN v_settled;
        v_funds := v_next;
    END LOOP;

    -- The sessions' new state, in one statement, before the posting: from the posting's lock on
    -- the revenue accounts to the commit, every other batch waits, so as little as can comes
    -- after it.
    UPDATE streaming_streamingsession AS s SET
        charged_until = z.until, metered_cost = s.metered_cost + z.metered, total_cost = s.total_cost + z.charge,
        charge_count = s.charge_count + (z.charge > 0)::integer, stop_at = z.stop_at_new,
        stop_at_reason = z.stop_at_reason_new, alert_level = z.level, updated_at = p_now,
        status = CASE WHEN z.stop_reason IS NULL THEN s.status
                      WHEN z.stop_reason = 'user' THEN 'completed' ELSE 'stopped' END,
        stop_reason = coalesce(z.stop_reason, s.stop_reason),
        end_time = coalesce(z.stop_time, s.end_time),
        total_usage_seconds = CASE WHEN z.stop_reason IS NULL THEN s.total_usage_seconds
                                   ELSE trunc(extract(epoch FROM z.stop_time - s.start_time))::integer END
    FROM unnest(v_sessions, v_outcomes) AS z
    WHERE s.id = z.id AND s.id = ANY (v_ids);

    -- Post the batch's one ledger transaction: the charges, the vendors' and the platform's
    -- credits, the holds. Its funds were decided under the locks above: a refusal is a bug.
    SELECT coalesce(array_agg(e.account ORDER BY e.credit, e.n), '{}'),
           coalesce(array_agg(e.amount ORDER BY e.credit, e.n), '{}'),
           coalesce(array_agg(e.session ORDER BY e.credit, e.n), '{}'),
           coalesce(array_agg(e.billed_from ORDER BY e.credit, e.n), '{}'),
           coalesce(array_agg(e.billed_until ORDER BY e.credit, e.n), '{}'),
           coalesce(array_agg(e.fee ORDER BY e.credit, e.n), '{}')
    INTO v_entry_account, v_entry_amount, v_entry_session, v_entry_from, v_entry_until, v_entry_fee
    FROM (
        SELECT false AS credit, z.id AS n, z.payer AS account, -z.charge AS amount, z.id AS session,
               z.charged_until AS billed_from, z.until AS billed_until, z.fee
        FROM unnest(v_sessions, v_outcomes) AS z
        WHERE z.charge > 0
        UNION ALL
        SELECT true, c.account, c.account, c.amount, NULL, NULL, NULL, NULL
        FROM (
            SELECT z.payee AS account, sum(z.charge - z.fee) AS amount
            FROM unnest(v_sessions, v_outcomes) AS z
            GROUP BY z.payee
            UNION ALL
            SELECT rev.id, f.amount
            FROM (
                SELECT z.asset_id, sum(z.fee) AS amount FROM unnest(v_sessions, v_outcomes) AS z GROUP BY z.asset_id
            ) AS f
            JOIN wallets_account AS rev
                ON rev.asset_id = f.asset_id AND rev.id = ANY (v_accounts)
               AND rev.kind = 'system' AND rev.system_code = 'platform_revenue'
        ) AS c
        WHERE c.amount <> 0
    ) AS e;
    SELECT coalesce(array_agg(z.hold_id), '{}'), coalesce(array_agg(z.payer), '{}'),
           coalesce(array_agg(z.new_hold - z.hold), '{}'),
           coalesce(array_agg(CASE WHEN z.stop_reason IS NOT NULL THEN 'released' END), '{}')
    INTO v_hold, v_hold_account, v_hold_delta, v_hold_close
    FROM unnest(v_sessions, v_outcomes) AS z
    WHERE z.new_hold <> z.hold OR z.stop_reason IS NOT NULL;
    v_charged := cardinality(v_entry_account) > 0;
    SELECT p.* INTO v_post FROM wallets_post_arrays(
        p_now,
        CASE WHEN v_charged THEN ARRAY['charge'] ELSE '{}' END::varchar[],
        CASE WHEN v_charged THEN ARRAY[NULL] ELSE '{}' END::varchar[],
        CASE WHEN v_charged THEN ARRAY['Metered sessions'] ELSE '{}' END::varchar[],
        CASE WHEN v_charged THEN ARRAY[NULL] ELSE '{}' END::bigint[],
        CASE WHEN v_charged THEN ARRAY['{}'] ELSE '{}' END::jsonb[],
        array_fill(1, ARRAY[cardinality(v_entry_account)]), v_entry_account, v_entry_amount, v_entry_session,
        v_entry_from, v_entry_until, v_entry_fee,
        v_hold, v_hold_account, v_hold_delta, v_hold_close
    ) AS p;
    IF v_post.refused IS NOT NULL THEN
        RAISE EXCEPTION 'the sweep''s posting was refused: % (account %)', v_post.refused, v_post.refused_account;
    END IF;

    -- What happened, a row per session.
    RETURN QUERY
    SELECT z.id, z.session_id, z.user_id, z.vendor_id, svc.name, z.asset_id, z.total_cost, z.charge, z.until,
           z.new_hold, z.remaining, z.stop_reason, z.stop_time, z.stop_at_new, z.runway_ms, z.crossed
    FROM unnest(v_sessions, v_outcomes) AS z
    JOIN marketplace_service AS svc ON svc.id = z.service_id AND svc.id = ANY (v_services)
    ORDER BY z.id;
END $$;

-- The active sessions of a shard, started by p_now, that nobody has billed up to it, in id order:
-- after its walk, what a sweep's run skipped. SKIP LOCKED skips a row under any lock, not only
-- another sweep's or a stop's: a sign of life in flight holds it too (a heartbeat, a metrics or
-- usage report, the live hub's UPDATE of its watched sessions every second). Left to the next
-- run, such a session was neither charged, nor held for the coming period, nor told when its
-- money would run out: it ran a period with nothing held, which the next run could not charge
-- (stopped back at the instant its funds ran out). The sweep bills these waiting for their rows,
-- as a stop does (streaming/sweep.py); one that another biller reached meanwhile is charged
-- nothing more (charges are cumulative). The shard is the walk's (streaming_bill's claim, above).
-- It reads every active session (charged_until is in no index: a sweep updates it on every row,
-- and indexed it would keep those updates from being HOT), once per run: a scan, not a batch's.
CREATE FUNCTION streaming_unbilled(p_now timestamptz, p_shard integer, p_shards integer)
RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    SELECT s.id FROM streaming_streamingsession AS s
    WHERE s.status = 'active' AND s.start_time <= p_now AND s.charged_until < p_now
      AND (p_shards <= 1 OR CASE WHEN s.payee_account_id % p_shards = p_shard THEN true ELSE false END)
    ORDER BY s.id
$$;
