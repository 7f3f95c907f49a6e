"""A posting takes the ledger transactions table's ROW EXCLUSIVE lock before it draws its
transactions' ids (it took it with its INSERT, after nextval): the dashboards' rollup reads that
lock's holders to know up to which id every transaction has ended, and took a posting between the
two for ended. Installed from a frozen copy of wallets/sql/wallets_post.sql beside this migration;
the reverse loads the previous copy."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).parent / "sql"


class Migration(migrations.Migration):
    dependencies = [("wallets", "0017_sends_confirmed")]

    operations = [
        migrations.RunSQL(
            (SQL / "0018_wallets_post.sql").read_text(),
            (SQL / "0014_wallets_post.sql").read_text(),
        ),
    ]
