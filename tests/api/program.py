"""A small program of two partners with every kind of record, for the API-wide and security tests."""

import datetime

from health.models import Alert, ScoringModel
from health.services import scores_recompute
from kpis.models import BusinessReview
from tests.factories import ActivityFactory, CertificationFactory, DealFactory, kind

A = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)


def build_program(partner_a, partner_b) -> dict:
    """Events, deals, certifications, scores, an alert and a review for partners P-A and P-B; their ids."""
    for partner, prefix in [(partner_a, "a"), (partner_b, "b")]:
        ActivityFactory(
            partner=partner,
            kind=kind("portal_login"),
            quantity=3,
            external_id=f"{prefix}-evt",
            occurred_at=A - datetime.timedelta(days=2),
        )
        DealFactory(partner=partner, external_id=f"{prefix}-deal", registered_at=A - datetime.timedelta(days=5))
        CertificationFactory(partner=partner, name=f"{prefix}-cert")
    scores_recompute(as_of=A)
    partner_a.refresh_from_db()
    model = ScoringModel.objects.get(pk=partner_a.health_model_id)
    alert = Alert.objects.create(
        partner=partner_a,
        model=model,
        kind=Alert.Kind.DROP,
        as_of=A - datetime.timedelta(hours=1),
        score=partner_a.health_score or 10.0,
        previous_score=60.0,
        trend=-5.0,
        band=partner_a.health_band,
        reasons=[],
    )
    review = BusinessReview.objects.create(partner=partner_a, period="2026-Q3", held_on=datetime.date(2026, 9, 20))
    return {"alert": alert.pk, "review": review.pk, "model": model.pk}
