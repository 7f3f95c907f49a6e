"""Settling with vendors: earnings past a vendor's payout threshold leave through the outbox."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from rest_framework.exceptions import ValidationError

from accounts.models import VendorProfile
from paygo.tokens import DEFAULT_TOKEN
from wallets import services
from wallets.models import Account, AccountKind, Asset, Withdrawal, WithdrawalKind

logger = logging.getLogger("paygo.streaming")


def payouts_queue(*, vendor_ids: Iterable[int]) -> list[Withdrawal]:
    """Queue a payout of the whole available balance in the payout threshold's token (USDC, as
    VendorProfile says) for every vendor among `vendor_ids` whose profile has a payout address and
    whose earnings in it reached the threshold, and the token's minimum withdrawal. (Not the default
    asset, which staff may change: a threshold of 100 USDC was read as 10^-10 ETH once ETH was made
    the default, and every ETH earning was paid out at once.) Earnings in other tokens are the
    vendor's to withdraw."""
    asset = Asset.objects.filter(code=DEFAULT_TOKEN, is_active=True).first()
    if asset is None:
        return []
    profiles = (
        VendorProfile.objects.filter(user_id__in=list(vendor_ids), payout_threshold__isnull=False, user__is_active=True)
        .exclude(payout_address="")
        .select_related("user")
    )
    profiles = {profile.user_id: profile for profile in profiles}
    if not profiles:
        return []
    accounts = Account.objects.filter(kind=AccountKind.USER, owner_id__in=list(profiles), asset=asset)
    queued = []
    for account in accounts:
        profile = profiles[account.owner_id]
        # Under the token's minimum withdrawal (a threshold below it), earnings wait until they reach
        # it: withdrawal_request would refuse the payout, and at every sweep.
        if account.available < max(profile.payout_threshold, asset.minimum_withdrawal) or account.available <= 0:
            continue
        try:
            queued.append(
                services.withdrawal_request(
                    user=profile.user,
                    asset=asset,
                    amount=account.available,
                    to_address=profile.payout_address,
                    kind=WithdrawalKind.PAYOUT,
                )
            )
        except ValidationError as exc:  # the balance moved since it was read, or the address is refused
            logger.info("Payout for vendor %s skipped: %s", account.owner_id, exc.detail)
        except services.TreasuryKeyUnusable as exc:  # none can be sent: they wait for the next sweep
            logger.error("Payouts not queued: %s", exc)
            break
    return queued
