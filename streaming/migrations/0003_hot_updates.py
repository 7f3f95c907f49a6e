"""Leave room in each page so that the sweep's updates of a session are HOT updates.

A session is rewritten every sweep, but never in an indexed column; with free space on its page
PostgreSQL updates it in place without touching the table's indexes.
"""

from django.db import migrations


TABLE = "ALTER TABLE streaming_streamingsession SET (fillfactor = {})"


class Migration(migrations.Migration):
    dependencies = [("streaming", "0002_lean_indexes")]

    operations = [migrations.RunSQL([TABLE.format(70)], [TABLE.format(100)])]
