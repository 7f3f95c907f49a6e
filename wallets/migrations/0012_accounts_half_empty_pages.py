"""Keep half of each page of accounts free, so that a sweep's balance updates are all HOT updates.

A sweep batch updates the balances of thousands of wallets in one transaction, and the wallets of
a page are often all in it (accounts are opened, and sessions started, in the same order). An old
version cannot be pruned before that transaction ends, so a page must have room for a new version
of every row it holds: with 30% free (0004) only 59% of a 100,000-session sweep's account updates
were HOT (pg_stat_user_tables), and each of the others added an entry to every index of the table
(four). With 55% free, as the sessions' pages (streaming 0005), all of them are. The setting
applies to pages written from now on (existing pages follow after a table rewrite, VACUUM FULL or
CLUSTER); no query scans the table whole.
"""

from django.db import migrations

TABLE = "ALTER TABLE wallets_account SET (fillfactor = {})"


class Migration(migrations.Migration):
    dependencies = [("wallets", "0011_wallets_post_arrays")]

    operations = [migrations.RunSQL([TABLE.format(45)], [TABLE.format(70)])]
