# Users' names are visible text, as every name (paygo.api.text.NameField): sign-up took any text, and a
# name with a direction override, a zero-width space or line breaks reached other people (the vendor
# directory, "... sent you ..." notifications and their emails) reading as other words.

import logging
import unicodedata

from django.db import migrations

logger = logging.getLogger("paygo.accounts")

NAME_MAX_LENGTH = 120

# A frozen copy of paygo.api.text's rule as this migration was written: what shows nothing or
# reorders what follows (the zero-width joiner, inside emoji sequences, aside).
_HIDING = ("Cc", "Cf", "Co", "Cs", "Cn")
_KEPT = {"\u200d"}


def _hides(char: str) -> bool:
    return char not in _KEPT and unicodedata.category(char) in _HIDING


def _shown(name: str) -> str:
    """What `name` shows: its hidden characters dropped (line breaks and tabs as spaces), in NFKC,
    its runs of spaces as one."""
    kept = "".join(" " if char.isspace() else char for char in name if not _hides(char) or char.isspace())
    text = " ".join(unicodedata.normalize("NFKC", kept).split())
    return "".join(char for char in text if not _hides(char))[:NAME_MAX_LENGTH].strip()


def names_as_visible_text(apps, schema_editor):
    """Rewrite each name the rule refuses (it holds a character that hides) as what it shows; one that
    shows nothing becomes "User <id>". A name the rule would only re-spell (another Unicode form of
    the same letters, two spaces) reads as it is and is left: nothing is changed that did not hide."""
    User = apps.get_model("accounts", "User")
    rewritten = []
    # A name of printable ASCII hides nothing: only the others are read.
    candidates = User.objects.filter(name__regex=r"[^\x20-\x7e]").order_by("pk").values_list("pk", "name")
    for pk, name in candidates.iterator():
        if not any(_hides(char) for char in name):
            continue
        User.objects.filter(pk=pk).update(name=_shown(name) or f"User {pk}")
        rewritten.append(pk)
    if rewritten:
        logger.warning(
            "%d user name(s) held characters that hide or reorder text and were rewritten as they show: "
            "users %s.",
            len(rewritten),
            ", ".join(map(str, rewritten)),
        )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0006_emails_in_one_form_per_mailbox")]

    operations = [migrations.RunPython(names_as_visible_text, migrations.RunPython.noop)]
