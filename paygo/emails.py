"""Email addresses in the one form PayGo stores and looks them up by: one mailbox, one spelling.

An address is delivered by its domain's ASCII form: Django's mail writes a Unicode domain in
Punycode (django.utils.encoding.punycode, Python's `idna` codec, IDNA 2003), so "exämple.com",
"EXÄMPLE.com" and "xn--exmple-cua.com" are one mailbox, and so are "example.com" in full-width
letters, or with a zero-width space, and "example.com" (the codec's nameprep folds case and
compatibility forms and drops what shows nothing). Stored and compared as typed, each spelling was
an account of its own whose mail reached the other's owner. The domain is written here as that same
codec writes it, so that what is compared is what mail is sent to; the `idna` package (IDNA 2008) is
not used for that reason: it keeps "straße.de" apart from "strasse.de", which Django mails alike.

The local part is left as typed, lower-cased only (as PayGo always has): it is the receiving server's
to interpret, and the address validators of Django (forms, DRF, the model) admit only ASCII in it,
so no other Unicode form of it reaches an account. Rewriting it further could only send mail to a
mailbox other than the one its owner gave.
"""

from __future__ import annotations

import unicodedata


class EmailDomainInvalid(ValueError):
    """The address's domain has no ASCII form (a label too long once encoded, characters IDNA
    prohibits, mixed text directions): no mail can be sent to it."""

    message = "This email's domain is not a valid internationalised domain name; check how it is spelled."


def normalize_email(email: str | None) -> str:
    """`email` in the form PayGo stores it: trimmed, its local part lower-cased, its domain in
    NFKC and then in ASCII (Punycode) as mail is sent to it, lower-cased. EmailDomainInvalid when
    the domain has no ASCII form. Not checked as an address: text without an "@" is only trimmed
    and lower-cased."""
    email = (email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at:
        return email.lower()
    try:
        domain = unicodedata.normalize("NFKC", domain).encode("idna").decode("ascii")
    except UnicodeError:
        raise EmailDomainInvalid(EmailDomainInvalid.message) from None
    return f"{local.lower()}@{domain.lower()}"


def email_key(email: str | None) -> str:
    """`email` as it is compared (a login, a transfer's recipient, a rate limit's or a lockout's
    key): normalize_email, or, for a domain without an ASCII form (an address no account is created
    with any more), trimmed and lower-cased as before: never an error."""
    try:
        return normalize_email(email)
    except EmailDomainInvalid:
        return (email or "").strip().lower()
