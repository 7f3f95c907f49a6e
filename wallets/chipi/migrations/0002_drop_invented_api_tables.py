"""The sandbox served invented paths from these tables (a custody total per token, references on
transfers); its chain is simulated data, so they are dropped and remade in Chipi's real shapes (0003)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chipi_sandbox", "0001_initial")]

    operations = [
        migrations.DeleteModel(name="SandboxCustody"),
        migrations.DeleteModel(name="SandboxTransaction"),
        migrations.DeleteModel(name="SandboxWallet"),
    ]
