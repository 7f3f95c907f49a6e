"""The seeded taxonomy, its rules, and the categories endpoint."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from marketplace.models import Category

pytestmark = pytest.mark.django_db

CATEGORIES = "/api/v1/service/categories"

SEEDED = {
    "Time-Based": ["Live Streaming", "Pay Per Hour", "Pay Per Session"],
    "Usage-Based": ["API Calls & Compute", "Pay Per View/Consumption", "Processing Services", "Storage Services"],
    "Digital Products & Content": ["Digital Downloads", "SaaS Features"],
    "E-commerce & Marketplace": ["Transaction-Based"],
    "Data & Analytics": ["Data Services"],
    "Specialized Services": ["Creative Services", "Professional Services", "Technical Services"],
}


def test_migration_seeds_six_categories_and_fourteen_subcategories():
    top = Category.objects.filter(parent__isnull=True)
    subs = Category.objects.filter(parent__isnull=False)

    assert set(top.values_list("name", flat=True)) == set(SEEDED)
    assert subs.count() == 14
    for name, children in SEEDED.items():
        assert sorted(Category.objects.get(name=name).children.values_list("name", flat=True)) == children


def test_categories_endpoint_is_public_and_constant_in_queries(anon, django_assert_num_queries):
    with django_assert_num_queries(2):
        response = anon.get(CATEGORIES)

    assert response.status_code == 200
    body = response.json()["categories"]
    assert {c["name"]: c["subcategories"] for c in body} == SEEDED


def test_category_names_are_unique_whatever_the_case():
    with pytest.raises(IntegrityError), transaction.atomic():
        Category.objects.create(name="time-based")


def test_a_subcategory_cannot_have_subcategories():
    pay_per_hour = Category.objects.get(name="Pay Per Hour")

    with pytest.raises(ValidationError) as error:
        Category(name="Pay Per Half Hour", parent=pay_per_hour).full_clean()

    assert "parent" in error.value.message_dict


def test_a_category_with_subcategories_stays_top_level():
    time_based = Category.objects.get(name="Time-Based")
    time_based.parent = Category.objects.get(name="Usage-Based")

    with pytest.raises(ValidationError):
        time_based.full_clean()
