"""Activity items: the fast validation path cleans a plain event exactly as DRF does, and leaves every
other item (anything to trim, refuse or word an error for) to DRF."""

import pytest

from prm.inputs import ActivityInput, lookups_for, validate_batch
from prm.models import Partner

pytestmark = pytest.mark.django_db

PLAIN = {
    "partner": "P-A",
    "kind": "portal_login",
    "occurred_at": "2026-10-01T09:30:00+02:00",
    "source": "portal",
    "external_id": "e-1",
}


def both_paths(item: dict):
    serializer = ActivityInput(context={"lookups": lookups_for([item], partners_queryset=Partner.objects.all())})
    return serializer.fast_validated(item), serializer


@pytest.mark.parametrize(
    "item",
    [
        PLAIN,
        {**PLAIN, "quantity": 7},
        {**PLAIN, "occurred_at": "2026-10-01T08:00:00+22:35"},
        {**PLAIN, "occurred_at": "2026-10-01T07:30:00Z", "external_id": "x" * 128},
    ],
)
def test_plain_events_are_cleaned_as_drf_cleans_them(partner_a, item):
    fast, serializer = both_paths(item)
    assert fast is not None
    assert fast == dict(serializer.run_validation(item))


@pytest.mark.parametrize(
    "change",
    [
        {"partner": " P-A"},
        {"partner": "P-NOPE"},
        {"kind": "telepathy"},
        {"occurred_at": "2026-10-01T09:30:00"},
        {"occurred_at": "2026-13-01T00:00:00Z"},
        {"quantity": True},
        {"quantity": 0},
        {"quantity": 1.0},
        {"quantity": "3"},
        {"source": ""},
        {"source": "s" * 65},
        {"external_id": 42},
        {"external_id": "a\x00b"},
        {"value": 10},
        {"contact_email": "ann@acme.example"},
        {"metadata": {}},
        {"colour": "red"},
    ],
)
def test_other_items_are_left_to_drf(partner_a, change):
    fast, _ = both_paths({**PLAIN, **change})
    assert fast is None


def test_a_batch_mixing_both_paths_reports_drf_errors(partner_a):
    items = [PLAIN, {**PLAIN, "external_id": "e-2", "quantity": 0}, {**PLAIN, "external_id": "e-1"}]
    with pytest.raises(Exception) as raised:
        validate_batch(ActivityInput, items, key_fields=("source", "external_id"))
    errors = [(error.index, error.field) for error in raised.value.errors]
    assert errors == [(1, "quantity"), (2, "external_id")]
