"""The platform's six categories and their subcategories."""

from django.db import migrations

TAXONOMY = {
    "Time-Based": ["Pay Per Hour", "Pay Per Session", "Live Streaming"],
    "Usage-Based": ["Pay Per View/Consumption", "API Calls & Compute", "Storage Services", "Processing Services"],
    "Digital Products & Content": ["Digital Downloads", "SaaS Features"],
    "E-commerce & Marketplace": ["Transaction-Based"],
    "Data & Analytics": ["Data Services"],
    "Specialized Services": ["Professional Services", "Creative Services", "Technical Services"],
}


def seed(apps, schema_editor):
    Category = apps.get_model("marketplace", "Category")
    for name, subcategories in TAXONOMY.items():
        parent, _ = Category.objects.get_or_create(name=name, defaults={"parent": None})
        for sub in subcategories:
            Category.objects.get_or_create(name=sub, defaults={"parent": parent})


def unseed(apps, schema_editor):
    Category = apps.get_model("marketplace", "Category")
    subcategories = [sub for subs in TAXONOMY.values() for sub in subs]
    Category.objects.filter(name__in=subcategories, services__isnull=True, subcategory_services__isnull=True).delete()
    Category.objects.filter(name__in=list(TAXONOMY), services__isnull=True, children__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0001_services")]

    operations = [migrations.RunPython(seed, unseed)]
