"""Development secrets: generated once per installation into var/secrets/, never constants in code."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from django.conf import settings

from paygo.dev_secrets import dev_secret

ROOT = Path(__file__).resolve().parents[2]

# The constants the settings fell back to before (an outside review forged tokens and webhooks with them).
OLD_JWT_SECRET = "insecure-dev-jwt-secret-change-me-0123456789abcdef"
OLD_SECRET_KEY = "insecure-dev-secret-key-change-me-0123456789abcdef"
OLD_CHIPI_SECRET_KEY = "sk_sandbox_dev"


def test_a_secret_is_made_once_and_kept_private(tmp_path):
    folder = tmp_path / "var" / "secrets"

    first = dev_secret("JWT_SECRET", folder=folder)
    again = dev_secret("JWT_SECRET", folder=folder)

    assert first == again == (folder / "JWT_SECRET").read_text()
    assert len(first) >= 50
    assert stat.S_IMODE((folder / "JWT_SECRET").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert os.listdir(folder) == ["JWT_SECRET"]  # no draft left behind


def test_each_installation_and_each_name_has_its_own(tmp_path):
    one = dev_secret("SECRET_KEY", folder=tmp_path / "one")

    assert dev_secret("SECRET_KEY", folder=tmp_path / "two") != one
    assert dev_secret("JWT_SECRET", folder=tmp_path / "one") != one


def test_when_another_process_makes_it_first_its_secret_wins(tmp_path):
    """The race of two first starts, made deterministic: while this process writes its draft,
    another one creates the file; both must end up with the other's secret."""
    folder = tmp_path / "secrets"

    def make_while_another_process_wins() -> str:
        assert dev_secret("SECRET_KEY", folder=folder, make=lambda: "the-other-process-secret") == (
            "the-other-process-secret"
        )
        return "this-process-secret"

    assert dev_secret("SECRET_KEY", folder=folder, make=make_while_another_process_wins) == "the-other-process-secret"
    assert (folder / "SECRET_KEY").read_text() == "the-other-process-secret"
    assert os.listdir(folder) == ["SECRET_KEY"]


def test_concurrent_first_starts_agree(tmp_path):
    folder = tmp_path / "secrets"
    script = (
        "from pathlib import Path; from paygo.dev_secrets import dev_secret;"
        f"print(dev_secret('JWT_SECRET', folder=Path({str(folder)!r})))"
    )
    starts = [
        subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(8)
    ]

    secrets = {start.communicate(timeout=60)[0].strip() for start in starts}

    assert secrets == {(folder / "JWT_SECRET").read_text()}
    assert os.listdir(folder) == ["JWT_SECRET"]


def test_an_empty_secret_file_is_refused(tmp_path):
    (tmp_path / "SECRET_KEY").write_text("")

    with pytest.raises(ValueError, match="empty"):
        dev_secret("SECRET_KEY", folder=tmp_path)


def development_settings() -> dict:
    """The secrets a development process (DEBUG=1, none in its environment) loads."""
    env = {name: value for name, value in os.environ.items() if name not in ("SECRET_KEY", "JWT_SECRET")}
    env = {name: value for name, value in env.items() if not name.startswith("CHIPI_")} | {"DEBUG": "1"}
    script = (
        "import json; from paygo import settings as s;"
        "print(json.dumps([s.SECRET_KEY, s.JWT_SECRET, s.CHIPI_SECRET_KEY, str(s.DEV_SECRETS_DIR)]))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert loaded.returncode == 0, loaded.stderr
    return dict(zip(["SECRET_KEY", "JWT_SECRET", "CHIPI_SECRET_KEY", "folder"], json.loads(loaded.stdout), strict=True))


def test_development_uses_this_installations_generated_secrets():
    first, second = development_settings(), development_settings()

    assert first == second  # every process of the installation reads the same ones
    folder = Path(first["folder"])
    assert folder == ROOT / "var" / "secrets"
    for name, old in (
        ("SECRET_KEY", OLD_SECRET_KEY),
        ("JWT_SECRET", OLD_JWT_SECRET),
        ("CHIPI_SECRET_KEY", OLD_CHIPI_SECRET_KEY),
    ):
        assert first[name] == (folder / name).read_text() != old
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert len({first["SECRET_KEY"], first["JWT_SECRET"], first["CHIPI_SECRET_KEY"]}) == 3


def test_var_is_ignored_by_git():
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "var/secrets/JWT_SECRET"], cwd=ROOT, capture_output=True, check=False
    )

    assert ignored.returncode == 0


# --- What the review forged with the old constants --------------------------------------------------


@pytest.mark.django_db
def test_a_token_signed_with_the_old_constant_opens_nothing(api, olga):
    assert settings.JWT_SECRET != OLD_JWT_SECRET
    forged = jwt.encode({"token_type": "access", "user_id": olga.pk, "exp": 4_102_444_800, "jti": "x"}, OLD_JWT_SECRET)

    client = api(olga)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    response = client.get("/api/v1/dashboard/admin/overview")

    assert response.status_code == 401


@pytest.mark.django_db
def test_a_webhook_signed_with_the_old_constant_credits_nothing(anon, alice, sandbox):
    from wallets.services import wallet_open
    from wallets.tests.conftest import balance_of

    assert OLD_CHIPI_SECRET_KEY not in (settings.CHIPI_SECRET_KEY, settings.CHIPI_WEBHOOK_SECRET)
    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=7_000_000)
    raw = json.dumps(
        {
            "event": "payment.completed",
            "txHash": paid.tx_hash,
            "recipient": alice.wallet_address,
            "token": "USDC",
            "amount": "7.00",
            "status": "COMPLETED",
        }
    ).encode()
    forged = hmac.new(OLD_CHIPI_SECRET_KEY.encode(), raw, hashlib.sha256).hexdigest()

    response = anon.post(
        "/api/v1/wallet/webhooks/chipi", data=raw, content_type="application/json", HTTP_CHIPI_SIGNATURE=forged
    )

    assert response.status_code == 401
    assert balance_of(alice) == 0
