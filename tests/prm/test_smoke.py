import pytest

from prm.inputs import ActivityInput, BatchInvalid, validate_batch
from prm.models import Activity
from prm.services import activities_ingest


@pytest.mark.django_db
def test_ingest_twice_counts_duplicates(partner_a):
    items = [
        {
            "partner": "P-A",
            "kind": "portal_login",
            "occurred_at": "2026-10-01T00:00:00Z",
            "source": "crm",
            "external_id": "e1",
        }
    ]
    cleaned = validate_batch(ActivityInput, items, key_fields=("source", "external_id"))
    assert activities_ingest(items=cleaned).as_dict() == {"created": 1, "duplicates": 0}
    cleaned = validate_batch(ActivityInput, items, key_fields=("source", "external_id"))
    assert activities_ingest(items=cleaned).as_dict() == {"created": 0, "duplicates": 1}
    assert Activity.objects.count() == 1


@pytest.mark.django_db
def test_naive_time_refused(partner_a):
    items = [
        {
            "partner": "P-A",
            "kind": "portal_login",
            "occurred_at": "2026-10-01T00:00:00",
            "source": "crm",
            "external_id": "e1",
        }
    ]
    with pytest.raises(BatchInvalid) as exc:
        validate_batch(ActivityInput, items, key_fields=("source", "external_id"))
    assert exc.value.errors[0].field == "occurred_at"
