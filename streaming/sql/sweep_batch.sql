-- streaming_bill(): what billing decides and writes for a batch of sessions, in one call. The
-- sweep calls it for each batch and a stop for its one session (streaming/billing.py); Python
-- keeps the orchestration, and publishes and notifies what it returns once committed.
--
-- It claims the sessions (the sweep's next batch after p_after in id order, FOR UPDATE SKIP
-- LOCKED: rows someone else is billing or stopping are left to the next run; a stop's sessions,
-- p_ids, waiting for their locks), locks their accounts in id order, and decides for each, from
-- its locked state (../shared/DESIGN.md, Metering; the arithmetic of streaming/sql/metering.sql):
-- - due(t) = floor(rate * billable_ms(t) / unit_ms), or rate * quantity / unit for usage; a charge
--   takes due(until) - metered_cost, `until` being now, or its stop;
-- - a session stops when asked (p_stop_reason), when its money or maxCost ran out before (stop_at),
--   or when it has had no sign of life for p_idle_ms: then at the instant that timeout ran out;
-- - the funds a session may use are its hold plus its wallet's free balance (shared, in id order,
--   by the payer's sessions of the batch); when they or maxCost cannot pay what is due, it stops
--   at the exact instant they ran out, charged up to it; a stopping session pays the rest of its
--   minimum charge out of what is there and within maxCost;
-- - a running session's hold is renewed for the coming period (p_period_ms); when that period
--   cannot be covered in full, it is told when it will stop (stop_at) and holds all it has left;
-- - its low-balance level (1: runway under 5 minutes, 2: under 1 minute) is kept, and a rise is
--   returned once per crossing.
-- It then posts ONE ledger transaction through wallets_post: a debit per charged session (its
-- charge record: the session, the interval it bills, the fee), a credit per vendor account, a fee
-- credit to platform revenue per asset, and every hold change; updates the sessions in one
-- statement; and returns a row per session claimed.
--
-- Charges are cumulative (due(until) - charged so far), and the session's row, locked, is the
-- claim: a sweep that runs twice, concurrently or after a crash, charges each period once.
--
-- What runs is this file, whole. A migration installs it from a frozen copy of it, kept beside
-- the migration (streaming/migrations/sql/NNNN_sweep_batch.sql); a test checks that this file
-- equals the latest copy. To change the rule: edit this file, copy it beside a new migration that
-- loads the copy (the reverse loads the previous copy).

CREATE OR REPLACE FUNCTION streaming_bill(
    p_now timestamptz, p_ids bigint[], p_stop_reason varchar,
    p_after bigint, p_limit integer, p_shard integer, p_shards integer,
    p_period_ms bigint, p_idle_ms bigint, p_fee_bps integer
) RETURNS TABLE (
    id bigint, session_id text, user_id bigint, vendor_id bigint, service_name varchar, asset_id bigint,
    total_cost_before numeric, charge numeric, until timestamptz, new_hold numeric, remaining numeric,
    stop_reason varchar, stop_time timestamptz, stop_at timestamptz, runway_ms numeric,
    alert_crossed boolean
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r record;
    v_ids bigint[];
    v_payer bigint := NULL;
    v_free numeric;
    v_now timestamptz;
    v_unit_ms bigint;
    v_uq bigint;
    v_free_ms bigint;
    v_reason varchar;
    v_stop_reason varchar;
    v_stop_time timestamptz;
    v_idle_at timestamptz;
    v_until timestamptz;
    v_ran_out timestamptz;
    v_due numeric;
    v_metered numeric;
    v_charge numeric;
    v_funds numeric;
    v_cap numeric;
    v_limit numeric;
    v_total_after numeric;
    v_shortfall numeric;
    v_room numeric;
    v_remaining numeric;
    v_need numeric;
    v_cap_left numeric;
    v_new_hold numeric;
    v_budget numeric;
    v_stop_at timestamptz;
    v_stop_at_reason varchar;
    v_runway numeric;
    v_level integer;
    v_fee numeric;
    -- What was decided, a value per session (array_append on a variable costs O(1)).
    o_id bigint[] := '{}';
    o_until timestamptz[] := '{}';
    o_metered numeric[] := '{}';
    o_charge numeric[] := '{}';
    o_fee numeric[] := '{}';
    o_hold_delta numeric[] := '{}';
    o_new_hold numeric[] := '{}';
    o_remaining numeric[] := '{}';
    o_stop_reason varchar[] := '{}';
    o_stop_time timestamptz[] := '{}';
    o_stop_at timestamptz[] := '{}';
    o_stop_at_reason varchar[] := '{}';
    o_level integer[] := '{}';
    o_crossed boolean[] := '{}';
    o_runway numeric[] := '{}';
    v_post record;
BEGIN
    -- Claim. The sweep walks the active sessions' index in id order and skips what others hold;
    -- a stop waits for its sessions. The batch must come from the active sessions' index, walked
    -- in id order and left after p_limit rows. A plain `s.id % p_shards = p_shard` is estimated
    -- to keep 0.5% of the rows (PostgreSQL's guess for an equality on an expression); so few that
    -- the planner read every active session, sorted them and kept the first p_limit, for every
    -- batch (10x slower per batch at 100,000 sessions). Written as a CASE, the planner takes it to
    -- keep half the rows, closer to 1/p_shards, and walks the index.
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
              AND (p_shards <= 1 OR CASE WHEN s.id % p_shards = p_shard THEN true ELSE false END)
            ORDER BY s.id LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        );
    END IF;
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;

    -- Their accounts, locked in id order (the one order that cannot deadlock), with the revenue
    -- accounts of their assets.
    PERFORM 1 FROM wallets_account AS a
    WHERE a.id IN (
        SELECT s.payer_account_id FROM streaming_streamingsession AS s WHERE s.id = ANY (v_ids)
        UNION SELECT s.payee_account_id FROM streaming_streamingsession AS s WHERE s.id = ANY (v_ids)
        UNION SELECT x.id FROM wallets_account AS x
              WHERE x.kind = 'system' AND x.system_code = 'platform_revenue'
                AND x.asset_id IN (SELECT s.asset_id FROM streaming_streamingsession AS s WHERE s.id = ANY (v_ids))
    )
    ORDER BY a.id FOR UPDATE;

    -- Decide, session by session, each payer's sessions together in id order (they share its
    -- free balance). Read now, under the locks: the sessions as the last biller left them, and
    -- their holds as they are.
    FOR r IN
        SELECT s.id, s.unit, s.rate, s.free_seconds, s.minimum_charge, s.max_cost, s.start_time, s.charged_until,
               s.metered_cost, s.total_cost, s.usage_quantity, s.stop_at, s.stop_at_reason, s.last_heartbeat_at,
               s.alert_level, s.payer_account_id, h.amount AS hold, a.balance - a.held AS free0
        FROM streaming_streamingsession AS s
        JOIN wallets_hold AS h ON h.id = s.hold_id
        JOIN wallets_account AS a ON a.id = s.payer_account_id
        WHERE s.id = ANY (v_ids)
        ORDER BY s.payer_account_id, s.id
    LOOP
        IF v_payer IS DISTINCT FROM r.payer_account_id THEN
            v_payer := r.payer_account_id;
            v_free := r.free0;
        END IF;
        v_now := CASE WHEN p_ids IS NOT NULL THEN greatest(p_now, r.charged_until) ELSE p_now END;
        v_unit_ms := CASE r.unit WHEN 'per_second' THEN 1000 WHEN 'per_minute' THEN 60000 WHEN 'per_hour' THEN 3600000 END;
        v_uq := CASE r.unit WHEN 'per_gb' THEN 1000000000 WHEN 'per_request' THEN 1 WHEN 'per_transaction' THEN 1 END;
        v_free_ms := r.free_seconds::bigint * 1000;

        -- When it stops, if it does.
        v_stop_reason := NULL;
        v_stop_time := NULL;
        IF p_stop_reason IS NOT NULL THEN
            v_stop_reason := p_stop_reason;
            v_stop_time := v_now;
        END IF;
        IF r.stop_at IS NOT NULL AND r.stop_at <= coalesce(v_stop_time, v_now) THEN
            -- Its money (or maxCost) ran out before: it ends there, whoever asks later.
            v_stop_reason := coalesce(nullif(r.stop_at_reason, ''), 'insufficient_funds');
            v_stop_time := r.stop_at;
        END IF;
        v_idle_at := r.last_heartbeat_at + p_idle_ms * interval '1 millisecond';
        IF v_stop_reason IS NULL AND v_idle_at <= v_now THEN
            -- Silent for the whole timeout: it stops the moment the timeout ran out.
            v_stop_reason := 'idle';
            v_stop_time := v_idle_at;
        END IF;
        IF v_stop_time IS NULL THEN
            v_until := greatest(r.charged_until, v_now);
        ELSE
            v_until := greatest(r.charged_until, v_stop_time);
            v_stop_time := v_until;
        END IF;

        -- What is due, and what can be paid.
        v_due := CASE
            WHEN v_unit_ms IS NOT NULL THEN
                streaming_time_due(r.rate, v_unit_ms, streaming_elapsed_ms(r.start_time, v_until), v_free_ms)
            WHEN v_uq IS NOT NULL THEN streaming_usage_due(r.rate, v_uq, r.usage_quantity)
            ELSE 0
        END;
        v_metered := greatest(0, v_due - r.metered_cost);
        v_funds := r.hold + v_free;
        v_cap := CASE WHEN r.max_cost IS NULL THEN NULL ELSE greatest(0, r.max_cost - r.total_cost) END;
        v_limit := CASE WHEN v_cap IS NULL THEN v_funds ELSE least(v_funds, v_cap) END;
        IF v_metered > v_limit THEN
            v_reason := CASE WHEN v_cap IS NOT NULL AND v_cap <= v_funds THEN 'max_cost' ELSE 'insufficient_funds' END;
            IF v_unit_ms IS NOT NULL THEN
                v_ran_out := least(
                    greatest(
                        r.start_time + streaming_last_affordable_ms(r.rate, v_unit_ms, v_free_ms, r.metered_cost + v_limit)
                            * interval '1 millisecond',
                        r.charged_until
                    ),
                    v_until
                );
                v_metered := streaming_time_due(r.rate, v_unit_ms, streaming_elapsed_ms(r.start_time, v_ran_out), v_free_ms)
                    - r.metered_cost;
                v_until := v_ran_out;
            ELSE
                v_metered := v_limit;
            END IF;
            IF v_stop_time IS NULL OR v_until <= v_stop_time THEN
                v_stop_reason := v_reason;
                v_stop_time := v_until;
            END IF;
        END IF;

        v_charge := v_metered;
        v_total_after := r.total_cost + v_metered;
        v_stop_at := NULL;
        v_stop_at_reason := '';
        v_level := 0;
        v_runway := NULL;
        IF v_stop_reason IS NOT NULL THEN
            -- The minimum charge is due at the end, out of what is there and within maxCost.
            v_shortfall := r.minimum_charge - v_total_after;
            IF v_shortfall > 0 THEN
                v_room := CASE WHEN v_cap IS NULL THEN v_funds - v_metered
                               ELSE least(v_funds - v_metered, v_cap - v_metered) END;
                v_charge := v_charge + greatest(0, least(v_shortfall, v_room));
            END IF;
            v_new_hold := 0;
            v_remaining := v_funds - v_charge;
        ELSE
            v_remaining := v_funds - v_metered;
            v_need := CASE
                WHEN v_unit_ms IS NOT NULL THEN streaming_period_cost(r.rate, v_unit_ms, p_period_ms)
                WHEN v_uq IS NOT NULL THEN r.rate
                ELSE 0
            END;
            v_cap_left := CASE WHEN r.max_cost IS NULL THEN NULL ELSE r.max_cost - v_total_after END;
            v_new_hold := CASE WHEN v_cap_left IS NULL THEN least(v_need, v_remaining)
                               ELSE least(v_need, v_remaining, v_cap_left) END;
            IF v_unit_ms IS NOT NULL THEN
                v_budget := v_remaining;
                v_reason := 'insufficient_funds';
                IF v_cap_left IS NOT NULL AND v_cap_left <= v_remaining THEN
                    v_budget := v_cap_left;
                    v_reason := 'max_cost';
                END IF;
                IF v_budget < v_need THEN
                    -- The coming period cannot be covered in full: stop when the money runs out,
                    -- and keep all of it for this session until then.
                    v_stop_at := r.start_time
                        + streaming_last_affordable_ms(r.rate, v_unit_ms, v_free_ms, r.metered_cost + v_metered + v_budget)
                            * interval '1 millisecond';
                    v_stop_at_reason := v_reason;
                    v_new_hold := v_budget;
                END IF;
                IF r.rate > 0 THEN
                    v_runway := streaming_runway_ms(r.rate, v_unit_ms, v_budget);
                    v_level := (v_runway < 300000)::integer + (v_runway < 60000)::integer;
                END IF;
            END IF;
        END IF;
        v_free := v_free + r.hold - v_charge - v_new_hold;
        v_fee := streaming_platform_fee(v_charge, p_fee_bps);

        o_id := array_append(o_id, r.id);
        o_until := array_append(o_until, v_until);
        o_metered := array_append(o_metered, v_metered);
        o_charge := array_append(o_charge, v_charge);
        o_fee := array_append(o_fee, v_fee);
        o_hold_delta := array_append(o_hold_delta, v_new_hold - r.hold);
        o_new_hold := array_append(o_new_hold, v_new_hold);
        o_remaining := array_append(o_remaining, v_remaining);
        o_stop_reason := array_append(o_stop_reason, v_stop_reason);
        o_stop_time := array_append(o_stop_time, v_stop_time);
        o_stop_at := array_append(o_stop_at, v_stop_at);
        o_stop_at_reason := array_append(o_stop_at_reason, v_stop_at_reason);
        o_level := array_append(o_level, v_level);
        o_crossed := array_append(o_crossed, v_runway IS NOT NULL AND v_level > r.alert_level);
        o_runway := array_append(o_runway, v_runway);
    END LOOP;

    -- Post the batch's one ledger transaction: the charges, the vendors' and the platform's
    -- credits, the holds. Its funds were decided under the locks above: a refusal is a bug.
    -- (Every join with the sessions also says `s.id = ANY (v_ids)`: the planner cannot size an
    -- unnest of arrays, and without it read the whole sessions table for each join, each batch.)
    SELECT p.* INTO v_post FROM wallets_post(
        p_now,
        CASE WHEN EXISTS (SELECT 1 FROM unnest(o_charge) AS c WHERE c > 0)
             THEN '[["charge", null, "Metered sessions", null, {}]]'::jsonb ELSE '[]'::jsonb END,
        coalesce((
            SELECT jsonb_agg(x.e) FROM (
                SELECT jsonb_build_array(1, s.payer_account_id, -d.charge, s.id, s.charged_until, d.until, d.fee) AS e
                FROM unnest(o_id, o_charge, o_fee, o_until) AS d(id, charge, fee, until)
                JOIN streaming_streamingsession AS s ON s.id = d.id AND s.id = ANY (v_ids)
                WHERE d.charge > 0
                UNION ALL
                SELECT jsonb_build_array(1, c.account, c.amount)
                FROM (
                    SELECT s.payee_account_id AS account, sum(d.charge - d.fee) AS amount
                    FROM unnest(o_id, o_charge, o_fee) AS d(id, charge, fee)
                    JOIN streaming_streamingsession AS s ON s.id = d.id AND s.id = ANY (v_ids)
                    GROUP BY s.payee_account_id
                    UNION ALL
                    SELECT rev.id, sum(d.fee)
                    FROM unnest(o_id, o_fee) AS d(id, fee)
                    JOIN streaming_streamingsession AS s ON s.id = d.id AND s.id = ANY (v_ids)
                    JOIN wallets_account AS rev
                        ON rev.kind = 'system' AND rev.system_code = 'platform_revenue' AND rev.asset_id = s.asset_id
                    GROUP BY rev.id
                ) AS c
                WHERE c.amount <> 0
            ) AS x
        ), '[]'::jsonb),
        coalesce((
            SELECT jsonb_agg(jsonb_build_array(
                s.hold_id, s.payer_account_id, d.delta, CASE WHEN d.stop_reason IS NOT NULL THEN 'released' END
            ))
            FROM unnest(o_id, o_hold_delta, o_stop_reason) AS d(id, delta, stop_reason)
            JOIN streaming_streamingsession AS s ON s.id = d.id AND s.id = ANY (v_ids)
            WHERE d.delta <> 0 OR d.stop_reason IS NOT NULL
        ), '[]'::jsonb)
    ) AS p;
    IF v_post.refused IS NOT NULL THEN
        RAISE EXCEPTION 'the sweep''s posting was refused: % (account %)', v_post.refused, v_post.refused_account;
    END IF;

    -- The sessions' new state, in one statement; then what happened, a row per session.
    RETURN QUERY
    WITH d AS (
        SELECT * FROM unnest(
            o_id, o_until, o_metered, o_charge, o_new_hold, o_remaining, o_stop_reason, o_stop_time, o_stop_at,
            o_stop_at_reason, o_level, o_crossed, o_runway
        ) AS d(id, until, metered, charge, new_hold, remaining, stop_reason, stop_time, stop_at, stop_at_reason,
               level, crossed, runway)
    ),
    old AS (
        SELECT s.id, s.session_id, s.user_id, s.vendor_id, s.service_id, s.asset_id, s.total_cost, s.start_time
        FROM streaming_streamingsession AS s WHERE s.id = ANY (v_ids)
    ),
    updated AS (
        UPDATE streaming_streamingsession AS s SET
            charged_until = d.until, metered_cost = s.metered_cost + d.metered, total_cost = s.total_cost + d.charge,
            charge_count = s.charge_count + (d.charge > 0)::integer, stop_at = d.stop_at,
            stop_at_reason = d.stop_at_reason, alert_level = d.level, updated_at = p_now,
            status = CASE WHEN d.stop_reason IS NULL THEN s.status
                          WHEN d.stop_reason = 'user' THEN 'completed' ELSE 'stopped' END,
            stop_reason = coalesce(d.stop_reason, s.stop_reason),
            end_time = coalesce(d.stop_time, s.end_time),
            total_usage_seconds = CASE WHEN d.stop_reason IS NULL THEN s.total_usage_seconds
                                       ELSE trunc(extract(epoch FROM d.stop_time - s.start_time))::integer END
        FROM d
        WHERE s.id = d.id AND s.id = ANY (v_ids)
        RETURNING s.id
    )
    SELECT old.id, old.session_id::text, old.user_id, old.vendor_id, svc.name, old.asset_id, old.total_cost,
           d.charge, d.until, d.new_hold, d.remaining, d.stop_reason, d.stop_time, d.stop_at, d.runway, d.crossed
    FROM d
    JOIN old ON old.id = d.id
    JOIN marketplace_service AS svc ON svc.id = old.service_id
    WHERE EXISTS (SELECT 1 FROM updated AS u WHERE u.id = d.id)
    ORDER BY old.id;
END $$;
