"""Deposit polling finds what no webhook reported: first in the wallets a deposit is expected in (the
owner was just given the address, or just reported a deposit), soon and again over the next hours;
the rest of Chipi's rate budget goes round every deposit wallet, oldest look first."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from wallets import selectors, services
from wallets.models import ChipiWallet, ChipiWalletRole
from wallets.tests.conftest import balance_of
from wallets.tests.test_multicall_deposits import batch, webhook

USDC = 1_000_000
RUN = timedelta(seconds=300)  # the beat's period of wallets.deposits_poll


def quiet_wallets(count: int, *, name: str = "quiet", polled_at=None) -> list[int]:
    """`count` deposit wallets whose owners never ask for their address (made as sign-ups long ago
    left them): the ids of their wallets."""
    users = get_user_model().objects.bulk_create(
        get_user_model()(email=f"{name}{n}@example.com", name=f"{name} {n}", password="!") for n in range(count)
    )
    wallets = ChipiWallet.objects.bulk_create(
        ChipiWallet(
            role=ChipiWalletRole.DEPOSIT,
            owner=user,
            external_user_id=f"{name}-{user.pk}",
            encrypt_key_sealed="sealed",
            address=f"0x{user.pk:064x}",
            polled_at=polled_at,
        )
        for n, user in enumerate(users)
    )
    return [wallet.pk for wallet in wallets]


def polled(ids) -> int:
    return ChipiWallet.objects.filter(pk__in=ids, polled_at__isnull=False).count()


def wallet_of(user) -> ChipiWallet:
    return ChipiWallet.objects.get(owner=user)


def test_a_wallet_whose_owner_asked_for_the_address_is_polled_in_the_next_run(api, alice, sandbox):
    """1,000 wallets were never looked at: the round robin reaches alice's weeks from now. She asked
    for her address and paid into it; the webhook was lost. The next run finds her deposit."""
    with time_machine.travel(timezone.now() - timedelta(days=2), tick=False):
        services.wallet_open(user=alice)  # at sign-up; the round robin looked at it since
        ChipiWallet.objects.filter(owner=alice).update(polled_at=timezone.now() + timedelta(hours=1))
    quiet = quiet_wallets(1000)

    address = api(alice).get("/api/v1/wallet/address").json()["address"]
    sandbox.receive_payment(to_address=address, token="USDC", amount=3 * USDC)

    assert services.deposits_poll() == 1
    assert balance_of(alice) == 3 * USDC
    # The rest of the budget went round the others, the never looked at first.
    assert polled(quiet) == services.POLL_WALLETS_PER_RUN - 1


def test_an_expected_deposit_is_looked_for_again_over_the_next_hours_then_left_to_the_round_robin(api, alice, sandbox):
    quiet = quiet_wallets(1000)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        address = api(alice).get("/api/v1/wallet/address").json()["address"]
        assert services.deposits_poll() == 0  # nothing paid yet
        sandbox.receive_payment(to_address=address, token="USDC", amount=2 * USDC)  # from an exchange, later

        for _ in range(2):
            clock.shift(RUN)
            assert services.deposits_poll() == 0  # looked at 5 and 10 minutes ago: not yet again
        assert wallet_of(alice).polled_at == start
        clock.shift(RUN)
        assert services.deposits_poll() == 1  # every third run
        assert balance_of(alice) == 2 * USDC
        last_look = wallet_of(alice).polled_at

        # The watch ends DEPOSIT_WATCH after the address was shown (or a deposit was reported: the
        # webhook's verification, deposit_verify, gives the address again).
        clock.move_to(start + services.DEPOSIT_WATCH + timedelta(seconds=1))
        sandbox.receive_payment(to_address=address, token="USDC", amount=USDC)
        for _ in range(3):
            clock.shift(RUN)
            assert services.deposits_poll() == 0  # back in the round robin, behind the never looked at
        assert wallet_of(alice).polled_at == last_look
        assert polled(quiet) == 7 * services.POLL_WALLETS_PER_RUN - 2  # 7 runs; two of their reads were alice's


def test_a_deposit_a_webhook_reported_has_its_wallet_looked_at_in_the_next_run(anon, alice, sandbox):
    """An exchange's batch paid alice twice under one hash; the webhook reports one transfer (a report
    credits one). The other is polling's to find: in the next run, ahead of 1,000 never looked at."""
    tx_hash = batch(sandbox, (alice, 10 * USDC), (alice, 5 * USDC))
    ChipiWallet.objects.filter(owner=alice).update(poll_wanted_until=None, polled_at=timezone.now())
    quiet_wallets(1000)

    assert webhook(anon, alice, tx_hash, "10.00").json()["credited"]
    assert balance_of(alice) == 10 * USDC

    with time_machine.travel(timezone.now() + services.DEPOSIT_WATCH_EVERY):
        assert services.deposits_poll() == 1
    assert balance_of(alice) == 15 * USDC


def test_the_round_robin_still_reaches_every_wallet_while_many_expect_deposits(db, sandbox):
    """However many owners ask for their address, a share of each run's budget goes round all the
    wallets: every one is looked at, the round robin's at its own pace."""
    wanting = quiet_wallets(60, name="wanting")
    owners = list(get_user_model().objects.filter(chipi_wallet__in=wanting))
    cold = quiet_wallets(100)
    share = services.POLL_WALLETS_PER_RUN - services.POLL_WANTED_PER_RUN
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(-(-(len(wanting) + len(cold)) // share)):  # a round of every wallet at the share
            for owner in owners:
                services.deposits_expect(user=owner)  # every owner asks again, each run
            services.deposits_poll()
            clock.shift(services.DEPOSIT_WATCH_EVERY)  # each wanting wallet due again: more than the share
    assert polled(cold) == len(cold)
    assert polled(wanting) == len(wanting)


def test_the_pick_reads_an_index(db):
    """The pick ran a sequential scan, a join and a sort of every wallet each run (0.84 s at 100,000
    wallets): it reads the two partial indexes, in their order, no sort."""
    quiet_wallets(3000, polled_at=timezone.now() - timedelta(days=1))
    now = timezone.now()
    ChipiWallet.objects.filter(pk__in=ChipiWallet.objects.order_by("pk").values("pk")[:5]).update(
        poll_wanted_until=now + timedelta(hours=1)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE wallets_chipiwallet")
        cursor.execute("ANALYZE accounts_user")

    round_robin = selectors.deposit_wallets_round_robin(limit=10, exclude=[]).explain()
    wanted = selectors.deposit_wallets_wanted(now=now, polled_before=now, limit=20).explain()

    assert "Index Scan using wallets_chipiwallet_poll_idx" in round_robin, round_robin
    assert "Sort" not in round_robin, round_robin
    assert "Seq Scan on wallets_chipiwallet" not in round_robin, round_robin
    assert "wallets_chipiwallet_wanted_idx" in wanted, wanted
    assert "Seq Scan on wallets_chipiwallet" not in wanted, wanted


def test_asking_again_and_again_writes_the_watch_once_per_interval(alice):
    """GET /wallet/address is a read the frontend may repeat: the watch is written again only once it
    would move by an interval, not on every request."""
    with time_machine.travel(timezone.now(), tick=False) as clock:
        services.wallet_open(user=alice)
        until = wallet_of(alice).poll_wanted_until
        assert until == timezone.now() + services.DEPOSIT_WATCH

        clock.shift(services.DEPOSIT_WATCH_EVERY - timedelta(seconds=1))
        services.wallet_open(user=alice)
        assert wallet_of(alice).poll_wanted_until == until

        clock.shift(timedelta(seconds=1))
        services.wallet_open(user=alice)
        assert wallet_of(alice).poll_wanted_until == timezone.now() + services.DEPOSIT_WATCH
