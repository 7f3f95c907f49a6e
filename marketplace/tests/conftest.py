"""Marketplace fixtures: a helper that lists services through the one write path."""

from __future__ import annotations

import pytest

from marketplace.models import Category, Service
from marketplace.services import service_create


def category(name: str) -> Category:
    return Category.objects.get(name=name)


@pytest.fixture
def make_service():
    """make_service(vendor, **fields) -> a Service created by service_create (rate in minor units)."""

    def make(vendor, **fields) -> Service:
        fields.setdefault("name", f"Service {Service.objects.count() + 1}")
        fields["category"] = category(fields.pop("category", "Time-Based"))
        sub = fields.pop("subcategory", None)
        fields["subcategory"] = category(sub) if sub else None
        fields.setdefault("rate", 1_000_000)
        fields.setdefault("unit", "per_minute")
        return service_create(vendor=vendor, **fields)

    return make
