"""Keep half of each page of sessions free, so that a sweep's updates are all HOT updates.

A sweep rewrites every active session of a page at once; with 30% free (0003) fewer than half of
them fit in place, and each of the others added an entry to every index of the table. With 55%
free each page takes a new version of every row it holds; the old versions are pruned from the
page before the next sweep. The setting applies to pages written from now on (existing pages
follow after a table rewrite, VACUUM FULL or CLUSTER); the table of sessions is about twice as
large for it, which no query scans whole (active sessions are found through a partial index).
"""

from django.db import migrations


TABLE = "ALTER TABLE streaming_streamingsession SET (fillfactor = {})"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0004_session_start_time_index")]

    operations = [migrations.RunSQL([TABLE.format(45)], [TABLE.format(70)])]
