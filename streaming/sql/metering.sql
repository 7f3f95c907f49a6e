-- Metering arithmetic in SQL: the same rules as streaming/pricing.py, in integers of minor units
-- and milliseconds, for the sweep's batch function to decide in the database. A property test
-- (streaming/tests/test_pricing_sql.py) checks these against pricing.py over random rates, units,
-- free seconds, budgets and instants: Python and SQL agree to the minor unit.
--
-- Division rounds as Python's // does (towards minus infinity), whatever the signs; amounts are
-- NUMERIC (18-decimal assets overflow a bigint).
--
-- None is STRICT: the planner inlines a SQL function's expression into the query that calls it
-- only when it is not, or when nothing in it could turn a NULL into a value; called instead, each
-- costs an executor's start and end (several of them per session in a sweep's batch). They are
-- given no NULLs.
--
-- What runs is this file, whole. A migration installs it from a frozen copy of it, kept beside
-- the migration (streaming/migrations/sql/NNNN_metering.sql); a test checks that this file
-- equals the latest copy. To change the rule: edit this file, copy it beside a new migration that
-- loads the copy (the reverse loads the previous copy).

-- a // b, as Python rounds it.
CREATE OR REPLACE FUNCTION streaming_floor_div(a numeric, b numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN mod(a, b) <> 0 AND (a < 0) <> (b < 0) THEN div(a, b) - 1 ELSE div(a, b) END
$$;

-- Milliseconds from one instant to another, truncated towards zero (billing._ms).
CREATE OR REPLACE FUNCTION streaming_elapsed_ms(p_from timestamptz, p_until timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT trunc(extract(epoch FROM p_until - p_from) * 1000)::bigint
$$;

-- What `elapsed_ms` of a session has cost in all, its first `free_ms` milliseconds free (pricing.time_due).
CREATE OR REPLACE FUNCTION streaming_time_due(p_rate numeric, p_unit_ms bigint, p_elapsed_ms bigint, p_free_ms bigint)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT streaming_floor_div(p_rate * greatest(0, p_elapsed_ms - p_free_ms), p_unit_ms)
$$;

-- What `quantity` reported usage has cost in all (pricing.usage_due).
CREATE OR REPLACE FUNCTION streaming_usage_due(p_rate numeric, p_unit_quantity bigint, p_quantity numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT streaming_floor_div(p_rate * p_quantity, p_unit_quantity)
$$;

-- What one billing period of a time-metered session can cost at most, rounded up (pricing.period_cost).
CREATE OR REPLACE FUNCTION streaming_period_cost(p_rate numeric, p_unit_ms bigint, p_period_ms bigint)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT -streaming_floor_div(-p_rate * p_period_ms, p_unit_ms)
$$;

-- The largest elapsed time whose time_due is at most `budget` (pricing.last_affordable_ms).
CREATE OR REPLACE FUNCTION streaming_last_affordable_ms(p_rate numeric, p_unit_ms bigint, p_free_ms bigint, p_budget numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_free_ms + streaming_floor_div((p_budget + 1) * p_unit_ms - 1, p_rate)
$$;

-- The largest quantity whose usage_due is at most `budget` (pricing.last_affordable_quantity).
CREATE OR REPLACE FUNCTION streaming_last_affordable_quantity(p_rate numeric, p_unit_quantity bigint, p_budget numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT streaming_floor_div((p_budget + 1) * p_unit_quantity - 1, p_rate)
$$;

-- How long `funds` last at this rate; 0 at a zero rate (pricing.runway_ms).
CREATE OR REPLACE FUNCTION streaming_runway_ms(p_rate numeric, p_unit_ms bigint, p_funds numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_rate = 0 THEN 0 ELSE streaming_floor_div(p_funds * p_unit_ms, p_rate) END
$$;

-- The platform's commission on a charge (pricing.platform_fee).
CREATE OR REPLACE FUNCTION streaming_platform_fee(p_amount numeric, p_fee_bps integer)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT streaming_floor_div(p_amount * p_fee_bps, 10000)
$$;
