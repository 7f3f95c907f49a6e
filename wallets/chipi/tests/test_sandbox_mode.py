"""The Chipi sandbox with DEBUG off: only when chosen (CHIPI_SANDBOX=1), and then said everywhere an
operator looks: a WARNING at every process start (web, Celery worker, beat), `check --deploy`, the
staff dashboard (dashboards' tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from wallets.chipi import get_gateway
from wallets.chipi.checks import SANDBOX_WARNING, check_sandbox_chosen
from wallets.chipi.gateway import sandbox_in_use

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def test_with_debug_on_the_sandbox_is_the_default_without_a_key(settings):
    # The suite runs with DEBUG=1 (pytest.ini), no key and no CHIPI_SANDBOX: the settings chose it.
    assert os.environ["DEBUG"] == "1"
    assert "CHIPI_SANDBOX" not in os.environ
    assert settings.CHIPI_SANDBOX is True
    assert sandbox_in_use() is True


@override_settings(CHIPI_SANDBOX=False)
def test_without_a_key_the_sandbox_must_have_been_chosen():
    with pytest.raises(ImproperlyConfigured, match="CHIPI_SANDBOX=1"):
        get_gateway()


@override_settings(CHIPI_API_KEY="pk_live_1", CHIPI_SECRET_KEY="sk_live_1", CHIPI_SANDBOX=False)
def test_with_a_key_it_is_live():
    assert sandbox_in_use() is False


def test_the_deploy_check_warns_when_the_sandbox_runs_with_debug_off():
    with override_settings(DEBUG=False):
        [warning] = check_sandbox_chosen(None)
    with override_settings(DEBUG=False, CHIPI_API_KEY="pk_live_1", CHIPI_SECRET_KEY="sk_live_1", CHIPI_SANDBOX=False):
        live = check_sandbox_chosen(None)

    assert warning.id == "chipi.W001"
    assert warning.level == 30  # WARNING
    assert "CHIPI_SANDBOX" in warning.msg
    with override_settings(DEBUG=True):
        assert check_sandbox_chosen(None) == []  # the development default needs no warning
    assert live == []


# --- The WARNING at start, from each kind of process -----------------------------------------------


@pytest.fixture
def sandbox_production_env(tmp_path) -> dict[str, str]:
    # The web process wants collectstatic's manifest; an empty one is enough to start.
    (tmp_path / "staticfiles.json").write_text(json.dumps({"paths": {}, "version": "1.1", "hash": ""}))
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "ALLOWED_HOSTS": "paygo.example.com",
        "DEBUG": "0",
        "SECRET_KEY": "s" * 50,
        "JWT_SECRET": "j" * 50,
        "CHIPI_SANDBOX": "1",
        "CHIPI_SECRET_KEY": "sk_sandbox_prod",
        "CHIPI_WEBHOOK_SECRET": "whsec_sandbox_prod",
        "CHIPI_KEY_ENCRYPTION_KEY": "master-" + "m" * 40,
        "STATIC_ROOT": str(tmp_path),
        "LOG_JSON": "1",
    }


WEB_STARTED = "web application loaded"
WEB = f"from daphne.utils import import_by_path; import_by_path('paygo.asgi:application'); print({WEB_STARTED!r})"


def output_until_started(command: list[str], env: dict[str, str], started: str) -> list[str]:
    """Start `command`, read its output (stdout and stderr) until a line contains `started`, stop it."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if started in line:
                break
    finally:
        process.kill()  # how it stops is not under test
        process.communicate(timeout=30)
    assert any(started in line for line in lines), "".join(lines)
    return lines


def sandbox_warnings(lines: list[str]) -> list[dict]:
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [record for record in records if record.get("message") == SANDBOX_WARNING]


@pytest.mark.parametrize(
    ("command", "started"),
    [
        # What Daphne loads (its own "Listening" line is below the log level the settings give it).
        pytest.param([sys.executable, "-c", WEB], WEB_STARTED, id="web"),
        pytest.param(
            [
                str(BIN / "celery"),
                "-A",
                "paygo",
                "worker",
                "--pool=solo",
                "-Q",
                "sandbox-warning-test",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            " ready.",
            id="celery-worker",
        ),
        pytest.param(
            [str(BIN / "celery"), "-A", "paygo", "beat", "-l", "info", "-s", "{tmp}/beat-schedule"],
            "beat: Starting",
            id="celery-beat",
        ),
    ],
)
def test_every_process_warns_once_at_start(sandbox_production_env, tmp_path, command, started):
    command = [part.replace("{tmp}", str(tmp_path)) for part in command]

    lines = output_until_started(command, sandbox_production_env, started)

    [warning] = sandbox_warnings(lines)
    assert warning["level"] == "WARNING"
    assert warning["logger"] == "paygo.chipi"


def test_a_live_process_does_not_warn(sandbox_production_env):
    env = sandbox_production_env | {"CHIPI_SANDBOX": "0", "CHIPI_API_KEY": "pk_live", "CHIPI_SECRET_KEY": "sk_live"}

    lines = output_until_started([sys.executable, "-c", WEB], env, WEB_STARTED)

    assert sandbox_warnings(lines) == []
