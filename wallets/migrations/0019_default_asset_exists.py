"""There is always a default token while there are tokens: a deferred constraint trigger refuses at
commit a transaction that leaves none (the unique index and the check already keep it to one, and
active). The admin's token form wrote back the is_default it had read, and an edit that raced the
default moving to its token left no default: every request naming no token failed. Installed from a
frozen copy of wallets/sql/default_asset.sql beside this migration; a database that race left
without a default is put right first (USDC, as seeded, or else the first token), or the trigger
would refuse the next change of the tokens."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


def default_restored(apps, schema_editor):
    Asset = apps.get_model("wallets", "Asset")
    if Asset.objects.filter(is_default=True).exists():
        return
    chosen = Asset.objects.filter(code="USDC").first() or Asset.objects.order_by("pk").first()
    if chosen is not None:
        Asset.objects.filter(pk=chosen.pk).update(is_default=True, is_active=True)


class Migration(migrations.Migration):
    dependencies = [("wallets", "0018_posting_locks_before_drawing_ids")]

    operations = [
        migrations.RunPython(default_restored, migrations.RunPython.noop),
        migrations.RunSQL(
            (SQL / "0019_default_asset.sql").read_text(),
            "DROP TRIGGER wallets_default_asset_exists ON wallets_asset;"
            " DROP FUNCTION wallets_default_asset_exists();",
        ),
    ]
