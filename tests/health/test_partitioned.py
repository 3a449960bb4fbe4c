"""The partitioned recompute (raw KPIs by partner id range on several workers, then one finalize)
gives exactly the snapshots of a single-process recompute, percentiles included."""

import datetime
from decimal import Decimal

import pytest

from health.models import ScoreSnapshot, ScoringComponent, ScoringModel
from health.services import partition_bounds, scores_recompute
from health.tasks import recompute_partitioned
from tests.factories import ActivityFactory, PartnerFactory, kind

A = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)


@pytest.fixture
def eager():
    from prm.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_partition_bounds_cover_every_partner_once(db):
    partners = [PartnerFactory() for _ in range(10)]
    bounds = partition_bounds(partitions=3)
    assert len(bounds) == 3
    covered = [p.id for p in partners if any(low <= p.id < high for low, high in bounds)]
    assert sorted(covered) == sorted(p.id for p in partners)
    assert all(b[1] == c[0] for b, c in zip(bounds, bounds[1:], strict=False))


def test_partitioned_run_equals_single_run(db, eager):
    model = ScoringModel.objects.get(name="Standard partner health")
    ScoringComponent.objects.create(model=model, kpi="content_views", weight=Decimal(5), method="percentile")
    for i in range(9):
        partner = PartnerFactory()
        ActivityFactory(
            partner=partner, kind=kind("content_view"), quantity=i % 4 + 1, occurred_at=A - datetime.timedelta(days=2)
        )
        ActivityFactory(
            partner=partner, kind=kind("portal_login"), quantity=i + 1, occurred_at=A - datetime.timedelta(days=5)
        )

    def snapshots():
        return {
            s.partner_id: (round(s.score, 9), s.band, [c["normalized"] for c in s.components])
            for s in ScoreSnapshot.objects.filter(as_of=A)
        }

    scores_recompute(as_of=A)
    reference = snapshots()
    ScoreSnapshot.objects.filter(as_of=A).delete()

    recompute_partitioned.delay(as_of=A.isoformat(), partitions=4)

    assert snapshots() == reference
    assert len(reference) == 9
    # Percentiles were ranked among all nine partners (4 distinct values), not within a partition.
    assert len({normalized[-1] for _, _, normalized in reference.values()}) == 4
