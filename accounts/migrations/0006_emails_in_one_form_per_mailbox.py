# Emails are stored in one form per mailbox (paygo.emails): a Unicode domain in the ASCII form mail is
# sent to. Before, "alice@ex\u00e4mple.com" and "alice@xn--exmple-cua.com" (or a full-width
# "example.com") were two accounts of one mailbox.

import logging
import unicodedata

from django.db import IntegrityError, migrations, transaction

logger = logging.getLogger("paygo.accounts")


def _normalised(email: str) -> str | None:
    """A frozen copy of paygo.emails.normalize_email as this migration was written; None for a
    domain without an ASCII form."""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return email.strip().lower()
    try:
        domain = unicodedata.normalize("NFKC", domain).encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return f"{local.lower()}@{domain.lower()}"


def normalise_emails(apps, schema_editor):
    """Rewrite each stored email that is not in its one form. One whose form another account holds
    already (two accounts of one mailbox: which one is its owner's, only an operator can find out) is
    left as it is and reported, as is one whose domain has no ASCII form and one whose form is longer
    than the column (a domain in Punycode is longer than in Unicode; the code before took the address
    by its Unicode length): the migration never fails on them. A left look-alike, or a left address
    too long in its one form, can no longer sign in (every lookup goes to the form) until an operator
    resolves it in the admin (deactivate it, or give it its owner's real address)."""
    User = apps.get_model("accounts", "User")
    limit = User._meta.get_field("email").max_length
    # Every email was stored trimmed and lower-cased: only one with a character outside ASCII changes.
    candidates = User.objects.filter(email__regex=r"[^\x01-\x7f]").order_by("pk").values_list("pk", "email")
    for pk, email in candidates.iterator():
        normalised = _normalised(email)
        if normalised is None:
            logger.warning("User %s: the domain of the stored email has no ASCII form; left as it is.", pk)
            continue
        if normalised == email:
            continue
        if len(normalised) > limit:
            logger.warning(
                "User %s: the stored email has %s characters in its ASCII form, more than the %s an email may "
                "have; left as it is for an operator to resolve (it can no longer sign in).",
                pk,
                len(normalised),
                limit,
            )
            continue
        try:
            with transaction.atomic():
                User.objects.filter(pk=pk).update(email=normalised)
        except IntegrityError:
            holder = User.objects.filter(email__iexact=normalised).values_list("pk", flat=True).first()
            logger.warning(
                "User %s: the stored email is another spelling of user %s's mailbox; left as it is for an "
                "operator to resolve (it can no longer sign in).",
                pk,
                holder,
            )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0005_sign_in_ended_by_password_change")]

    operations = [migrations.RunPython(normalise_emails, migrations.RunPython.noop)]
