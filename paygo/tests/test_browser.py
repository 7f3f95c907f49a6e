"""PayGo in a real browser: headless Chromium (the system's, driven by Playwright) against the
project's own server (`manage.py serve`, Daphne) on the test database.

It opens the landing page, the API docs (rendered, with no request leaving the machine), the admin
pages an operator reads (amounts in units, accounts by owner, the lists' columns in view at 1366
px), a running session's admin page and the /live/ page of its user, where the cost ticks over a
really ticking socket until the user stops it; and it finds no console error on the way.

BROWSER_SCREENSHOTS=<folder> keeps a screenshot of every page it opens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from conftest import PASSWORD, database_url, money_db
from marketplace.models import Category
from marketplace.services import service_create
from streaming import services
from streaming.models import SessionStatus, StopReason, StreamingSession
from wallets.tests.conftest import balance_of, fund_wallet

pytestmark = [money_db(), pytest.mark.timeout(240)]

CHROMIUM = "/usr/bin/chromium"  # the system's: scripts/ensure-services.sh installs it (make test)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TICK_SECONDS = "0.2"
USDC = 1_000_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(django_db_setup):
    """`manage.py serve` on a free port, on the test database and Redis, ticking every 0.2 s."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),  # the test database (already created by pytest-django)
        "STREAM_TICK_SECONDS": TICK_SECONDS,
        "DEBUG": "1",
    }
    log = tempfile.NamedTemporaryFile("w+", prefix="paygo-serve-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    # Poll for the first healthy answer: the server's readiness has no other signal.
    while not _healthy(base):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the server did not start:\n{Path(log.name).read_text()}")
        time.sleep(0.2)
    yield base
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()
    os.unlink(log.name)


class Browser:
    """One Chromium profile; records every request and every console error of its pages."""

    def __init__(self, context, base: str):
        self.context, self.base = context, base
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.shots = os.environ.get("BROWSER_SCREENSHOTS")
        context.on("request", lambda request: self.requests.append(request.url))

    def page(self):
        page = self.context.new_page()
        page.on("console", lambda m: self.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        return page

    def shot(self, page, name: str) -> None:
        if self.shots:
            Path(self.shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=f"{self.shots}/{name}.png", full_page=True)

    def outside(self) -> list[str]:
        ours = urlsplit(self.base).netloc
        return [url for url in self.requests if urlsplit(url).netloc != ours and not url.startswith("data:")]


def _in_view(page, *columns: str) -> bool:
    """The list's columns are in view at this width, not pushed off to the side of its table."""
    return page.evaluate(
        """columns => {
            const box = document.querySelector("#result_list").parentElement.getBoundingClientRect();
            const right = Math.min(box.right, document.documentElement.clientWidth);
            return columns.every(name => {
                const header = document.querySelector(`#result_list th.column-${name}`);
                return header && header.getBoundingClientRect().right <= right;
            });
        }""",
        list(columns),
    )


def _ticks(page) -> int:
    return page.evaluate("() => Number(document.getElementById('live-cost').dataset.ticks || 0)")


def test_a_newcomer_an_operator_and_a_user_in_a_real_browser(server, tmp_path, alice, victor, olga):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "no system Chromium: `make services` installs it"
    fund_wallet(alice, 10 * USDC)
    category = Category.objects.filter(parent__isnull=True).first()
    service = service_create(vendor=victor, name="Live Yoga", category=category, rate=1_000, unit="per_second")
    session = services.session_start(user=alice, service=service)  # 0.001000 USDC a second
    account = alice.wallet_accounts.get(asset__code="USDC")

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1366, "height": 900},
        )
        # Generous waits: the machine may be busy; each wait still ends as soon as its condition holds.
        context.set_default_timeout(60_000)
        expect.set_options(timeout=30_000)
        browser = Browser(context, server)
        page = browser.page()

        # The landing page.
        page.goto(f"{server}/")
        expect(page.locator("h1")).to_have_text("PayGo")
        for href in ("/api/v1/docs/", "/admin/", "/api/v1/health", "/live/"):
            expect(page.locator(f"main a[href='{href}']").first).to_be_visible()
        browser.shot(page, "home")

        # The docs, rendered from the app's own files, with the sockets' contract.
        page.goto(f"{server}/api/v1/docs/")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("PayGo API")
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
        expect(page.locator(".swagger-ui .info .description")).to_contain_text("cost.tick")
        browser.shot(page, "docs")

        # The operator signs into the admin.
        page.goto(f"{server}/admin/login/?next=/admin/")
        page.fill("#id_username", olga.email)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#site-name")).to_be_visible()

        page.goto(f"{server}/admin/wallets/account/")
        expect(page.locator("#result_list")).to_contain_text("Alice <alice@example.com> · USDC")
        assert _in_view(page, "account", "balance_in_units", "held_in_units", "kind")
        browser.shot(page, "admin-accounts")
        page.goto(f"{server}/admin/wallets/account/{account.pk}/change/")
        expect(page.locator("#content")).to_contain_text("Alice <alice@example.com> · USDC")
        expect(page.locator(".field-balance_in_units")).to_contain_text(" USDC")
        expect(page.locator(".field-balance_in_units")).not_to_contain_text(str(account.balance))

        page.goto(f"{server}/admin/wallets/ledgertransaction/")
        expect(page.locator("#result_list thead th").first).to_contain_text("Amount")
        expect(page.locator("#result_list tbody tr").first).to_contain_text("10.000000 USDC")
        assert _in_view(page, "amount", "created_at", "kind", "short_reference")
        browser.shot(page, "admin-ledger")

        page.goto(f"{server}/admin/streaming/streamingsession/")
        expect(page.locator("#result_list")).to_contain_text(str(session.session_id)[:8])
        assert _in_view(page, "short_id", "status", "cost", "start_time")
        browser.shot(page, "admin-sessions")

        # The running session's admin page ticks over the admin's own session.
        operator = page
        operator.goto(f"{server}/admin/streaming/streamingsession/{session.pk}/change/")
        expect(operator.locator(".field-price")).to_contain_text("0.001000 USDC per second")
        expect(operator.locator("input[name=_save]")).to_have_count(0)
        operator.wait_for_function("() => Number(document.getElementById('live-cost').dataset.ticks || 0) >= 3")
        expect(operator.locator("[data-field=balance]")).to_contain_text("USDC")
        browser.shot(operator, "admin-session-live")

        # The user signs in on /live/, picks the session, watches it tick, and stops it.
        user = browser.page()
        user.goto(f"{server}/live/")
        user.fill("input[name=email]", alice.email)
        user.fill("input[name=password]", PASSWORD)
        user.click("#sign-in button[type=submit]")
        user.click(f"a[href='/live/{session.session_id}/']")
        user.wait_for_function("() => Number(document.getElementById('live-cost').dataset.ticks || 0) >= 3")
        first = _ticks(user)
        user.wait_for_function(f"() => Number(document.getElementById('live-cost').dataset.ticks || 0) > {first}")
        expect(user.locator("[data-field=status]")).to_have_text("running")
        expect(user.locator("[data-field=estimatedCost]")).to_contain_text("USDC")
        expect(user.locator("[data-field=balance]")).to_contain_text("USDC")
        expect(user.locator("[data-field=runway]")).to_contain_text(" h ")  # 10 USDC at 0.001 a second
        browser.shot(user, "live-ticking")

        user.click("#stop")
        expect(user.locator("[data-field=status]")).to_have_text("stopped (user)")
        expect(operator.locator("[data-field=status]")).to_have_text("stopped (user)")
        browser.shot(user, "live-stopped")
        outside, errors = browser.outside(), browser.errors
        context.close()

    assert not outside, f"requests that left the machine: {outside}"
    assert not errors, f"console errors: {errors}"
    session = StreamingSession.objects.get(pk=session.pk)
    assert (session.status, session.stop_reason) == (SessionStatus.COMPLETED, StopReason.USER)
    assert session.total_cost > 0
    assert balance_of(alice) == 10 * USDC - session.total_cost
