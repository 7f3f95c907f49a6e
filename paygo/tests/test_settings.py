"""paygo/settings.py read in-process under a changed environment (runpy: a fresh module namespace,
Django's own settings untouched): a value that cannot work stops the app at start."""

from __future__ import annotations

import runpy

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTINGS_FILE = settings.BASE_DIR / "paygo" / "settings.py"


def load(monkeypatch, **variables: str) -> dict:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


# A sweep batch of 0 made every sweep raise (range() with a step of 0), a period of 0 a beat entry
# due all the time, an idle timeout of 0 or less stopped every session at its first sweep.
COUNTS = (
    "BILLING_SWEEP_SECONDS",
    "BILLING_SWEEP_SHARDS",
    "BILLING_SWEEP_BATCH",
    "SESSION_IDLE_SECONDS",
    "SESSION_METRICS_KEPT",
    "WS_MAX_SOCKETS_PER_USER",
    "DASHBOARDS_ROLLUP_CHUNK",
)


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_count_below_one_stops_the_app_at_start(monkeypatch, name, value):
    with pytest.raises(ImproperlyConfigured) as refused:
        load(monkeypatch, **{name: value})

    assert str(refused.value) == f"{name} is {value}; it must be at least 1."


def test_counts_of_one_are_taken(monkeypatch):
    loaded = load(monkeypatch, **dict.fromkeys(COUNTS, "1"))

    assert [loaded[name] for name in COUNTS] == [1] * len(COUNTS)
    assert loaded["CELERY_BEAT_SCHEDULE"]["billing-sweep"]["schedule"] == 1.0


DURATIONS = (
    "STREAM_TICK_SECONDS",
    "DASHBOARDS_ROLLUP_EVERY_SECONDS",
    "DATABASE_POOL_TIMEOUT",
    "REDIS_TIMEOUT_SECONDS",
    "CHIPI_TIMEOUT_SECONDS",
    "RATES_TIMEOUT_SECONDS",
    "TWILIO_TIMEOUT",
)


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_duration_of_zero_or_less_stops_the_app_at_start(monkeypatch, name, value):
    """A tick of 0 left the live hub looping without sleeping; a rollup every 0 s was a beat entry
    due all the time (review r15)."""
    with pytest.raises(ImproperlyConfigured) as refused:
        load(monkeypatch, **{name: value})

    assert str(refused.value) == f"{name} is {float(value)}; it must be a positive number of seconds."


def test_short_durations_are_taken(monkeypatch):
    loaded = load(monkeypatch, **dict.fromkeys(DURATIONS, "0.05"))

    assert [loaded[name] for name in DURATIONS if name in loaded] == [0.05] * (len(DURATIONS) - 1)
    assert loaded["CELERY_BEAT_SCHEDULE"]["dashboards-rollup"]["schedule"] == 0.05
