# One execution is one transaction, one hash: a multicall's transfers are records of their own that
# share it (as on chain), so the hash is no longer unique per record.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chipi_sandbox", "0003_real_api_tables"),
    ]

    operations = [
        migrations.AlterField(
            model_name="sandboxtransaction",
            name="tx_hash",
            field=models.CharField(db_index=True, max_length=66),
        ),
    ]
