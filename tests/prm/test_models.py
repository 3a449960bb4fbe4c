"""The database itself refuses inconsistent partner data, whatever path writes it."""

import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from prm.models import Activity, Certification, Deal, Partner
from tests.factories import ActivityFactory, CertificationFactory, ContactFactory, DealFactory, PartnerFactory, kind

T = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)


def refused(**create):
    model = create.pop("model")
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.create(**create)


@pytest.mark.parametrize(
    "stage,closed_at,ok",
    [
        ("won", T, True),
        ("lost", T, True),
        ("won", None, False),
        ("lost", None, False),
        ("registered", None, True),
        ("approved", T, False),
        ("rejected", T, False),
    ],
)
def test_deal_closed_at_iff_won_or_lost(db, stage, closed_at, ok):
    partner = PartnerFactory()
    values = {
        "model": Deal,
        "external_id": f"D-{stage}",
        "partner": partner,
        "name": "x",
        "amount": 1,
        "stage": stage,
        "registered_at": T - datetime.timedelta(days=3),
        "closed_at": closed_at,
    }
    if ok:
        Deal.objects.create(**{k: v for k, v in values.items() if k != "model"})
    else:
        refused(**values)


def test_deal_amount_and_dates(db):
    partner = PartnerFactory()
    refused(
        model=Deal,
        external_id="D-neg",
        partner=partner,
        name="x",
        amount=Decimal("-1"),
        stage="registered",
        registered_at=T,
    )
    refused(
        model=Deal,
        external_id="D-early",
        partner=partner,
        name="x",
        amount=1,
        stage="won",
        registered_at=T,
        closed_at=T - datetime.timedelta(seconds=1),
    )
    DealFactory(external_id="D-1", partner=partner)
    refused(model=Deal, external_id="D-1", partner=partner, name="x", amount=1, stage="registered", registered_at=T)


def test_activity_quantity_and_identity(db):
    partner = PartnerFactory()
    refused(
        model=Activity,
        partner=partner,
        kind=kind("portal_login"),
        occurred_at=T,
        quantity=0,
        source="s",
        external_id="e0",
    )
    ActivityFactory(partner=partner, source="crm", external_id="e1")
    refused(model=Activity, partner=partner, kind=kind("portal_login"), occurred_at=T, source="crm", external_id="e1")
    ActivityFactory(partner=partner, source="portal", external_id="e1")  # same id, other source: a different event
    assert Activity.objects.count() == 2


def test_certification_expiry_and_natural_key(db):
    partner = PartnerFactory()
    refused(
        model=Certification,
        partner=partner,
        name="C",
        role="sales",
        earned_on=datetime.date(2026, 1, 1),
        expires_on=datetime.date(2026, 1, 1),
    )
    CertificationFactory(partner=partner, name="C", role="sales", earned_on=datetime.date(2026, 1, 1))
    refused(model=Certification, partner=partner, name="C", role="sales", earned_on=datetime.date(2026, 1, 1))
    contact = ContactFactory(partner=partner)
    CertificationFactory(partner=partner, name="C", role="sales", earned_on=datetime.date(2026, 1, 1), contact=contact)
    refused(
        model=Certification,
        partner=partner,
        name="C",
        role="sales",
        earned_on=datetime.date(2026, 1, 1),
        contact=contact,
    )
    assert Certification.objects.count() == 2


def test_partner_target_and_agreement(db):
    refused(model=Partner, external_id="P-neg", name="x", type="msp", quarterly_revenue_target=Decimal("-5"))
    refused(
        model=Partner,
        external_id="P-dates",
        name="x",
        type="msp",
        agreement_start=datetime.date(2026, 2, 1),
        agreement_end=datetime.date(2026, 1, 1),
    )
    PartnerFactory(external_id="P-1")
    refused(model=Partner, external_id="P-1", name="again", type="msp")


def test_the_any_lookup_matches_a_list_sent_as_one_array(db, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    partners = [PartnerFactory() for _ in range(3)]
    wanted = {partners[0].pk, partners[2].pk}
    with CaptureQueriesContext(connection) as queries:
        assert set(Partner.objects.filter(pk__any=wanted).values_list("pk", flat=True)) == wanted
        assert set(Activity.objects.filter(partner_id__any=wanted).values_list("pk", flat=True)) == set()
        ActivityFactory(partner=partners[2])
        assert Activity.objects.filter(partner__any=wanted).count() == 1
    assert "= ANY(" in queries[0]["sql"] and "IN (" not in queries[0]["sql"]
    with django_assert_num_queries(0):  # an empty list matches nothing, without asking
        assert list(Partner.objects.filter(pk__any=[])) == []
