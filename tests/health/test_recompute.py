"""scores_recompute: model choice, snapshots, trends, idempotence, atomicity, locking and query counts."""

import datetime
import json
import threading
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.db.models import Max

from health.models import PendingRecompute, RecomputeLock, ScoreRun, ScoreSnapshot, ScoringComponent, ScoringModel
from health.scoring import components_expand
from health.services import RecomputeBusy, scores_backfill, scores_recompute
from prm.models import Partner
from tests.factories import ActivityFactory, PartnerFactory, TierFactory, kind

A = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)


def simple_model(name="Logins", priority=10, types=(), tiers=(), active=True, method="target", **kw) -> ScoringModel:
    """A one-component model: 10 portal logins in 90 days is a perfect score."""
    model = ScoringModel.objects.create(name=name, priority=priority, segment_types=list(types), is_active=active, **kw)
    model.segment_tiers.set(tiers)
    ScoringComponent.objects.create(
        model=model,
        kpi="portal_logins",
        weight=Decimal(1),
        method=method,
        target=Decimal(10) if method == "target" else None,
        missing="zero",
    )
    return model


def logins(partner, quantity, at=A - datetime.timedelta(days=1)):
    ActivityFactory(partner=partner, kind=kind("portal_login"), quantity=quantity, occurred_at=at)


@pytest.fixture
def only_model(db):
    """Deactivate the seeded default model so that tests control which model scores whom."""
    ScoringModel.objects.update(is_active=False)
    return simple_model()


def test_default_model_is_seeded_with_pipeline_heaviest(db):
    model = ScoringModel.objects.get(name="Standard partner health")
    weights = {}
    for component in model.components.all():
        from kpis.registry import kpi_catalogue

        category = kpi_catalogue()[component.kpi].category
        weights[category] = weights.get(category, 0) + component.weight
    assert model.is_active
    assert max(weights, key=weights.get) == "pipeline"
    assert weights["enablement"] > weights["engagement"]


def test_recompute_writes_one_snapshot_per_partner_and_denormalizes(only_model):
    p1, p2 = PartnerFactory(), PartnerFactory()
    logins(p1, 5)
    logins(p2, 20)
    exited = PartnerFactory(status=Partner.Status.EXITED)
    result = scores_recompute(as_of=A)
    assert result.snapshots == 2 and result.run.status == ScoreRun.Status.SUCCEEDED
    snap = ScoreSnapshot.objects.get(partner=p1)
    assert snap.score == pytest.approx(50.0) and snap.band == "watch" and snap.model == only_model
    assert snap.components[0]["raw"] == 5 and snap.components[0]["contribution"] == pytest.approx(50.0)
    p1.refresh_from_db()
    assert (p1.health_score, p1.health_band, p1.health_as_of, p1.health_model_id) == (50.0, "watch", A, only_model.id)
    assert not ScoreSnapshot.objects.filter(partner=exited).exists()


def test_rerun_same_instant_replaces_never_duplicates(only_model):
    partner = PartnerFactory()
    logins(partner, 5)
    scores_recompute(as_of=A)
    logins(partner, 3, at=A - datetime.timedelta(days=2))
    scores_recompute(as_of=A)
    snapshots = ScoreSnapshot.objects.filter(partner=partner)
    assert snapshots.count() == 1
    assert snapshots.get().score == pytest.approx(80.0)


def test_future_data_is_ignored(only_model):
    partner = PartnerFactory()
    logins(partner, 5)
    scores_recompute(as_of=A)
    before = ScoreSnapshot.objects.get(partner=partner).score
    logins(partner, 5, at=A + datetime.timedelta(seconds=1))
    scores_recompute(as_of=A)
    assert ScoreSnapshot.objects.get(partner=partner).score == before


def test_trend_against_latest_snapshot_at_least_trend_days_old(only_model):
    partner = PartnerFactory()
    logins(partner, 8, at=A - datetime.timedelta(days=100))  # in the window of A-35d only
    logins(partner, 2, at=A - datetime.timedelta(days=1))
    scores_recompute(as_of=A - datetime.timedelta(days=35))  # 8 + 0 logins? window (A-125d, A-35d]: 8 -> 80
    scores_recompute(as_of=A - datetime.timedelta(days=10))  # too recent to be the trend base
    result = scores_recompute(as_of=A)
    latest = ScoreSnapshot.objects.get(partner=partner, as_of=A, run=result.run)
    assert latest.score == pytest.approx(20.0)
    assert latest.trend == pytest.approx(20.0 - 80.0)
    first = ScoreSnapshot.objects.get(partner=partner, as_of=A - datetime.timedelta(days=35))
    assert first.trend is None


def test_model_chosen_by_segment_then_priority_then_id(db):
    ScoringModel.objects.update(is_active=False)
    gold = TierFactory(slug="gold")
    msp_model = simple_model("MSP", priority=5, types=["msp"])
    gold_model = simple_model("Gold", priority=5, tiers=[gold])
    everyone = simple_model("Everyone", priority=50)
    simple_model("Inactive", priority=1, active=False)
    msp_gold = PartnerFactory(type="msp", tier=gold)
    reseller_gold = PartnerFactory(type="reseller", tier=gold)
    reseller = PartnerFactory(type="reseller")
    scores_recompute(as_of=A)
    chosen = dict(ScoreSnapshot.objects.values_list("partner_id", "model_id"))
    # MSP and Gold tie on priority 5: the lower id (MSP, created first) wins.
    assert chosen == {msp_gold.id: msp_model.id, reseller_gold.id: gold_model.id, reseller.id: everyone.id}


def test_run_for_one_model_scores_its_segment_and_leaves_current_scores(only_model):
    inactive = simple_model("Trial", priority=1, active=False, types=["msp"])
    msp, reseller = PartnerFactory(type="msp"), PartnerFactory(type="reseller")
    logins(msp, 10)
    scores_recompute(as_of=A)
    result = scores_recompute(as_of=A + datetime.timedelta(hours=1), model=inactive)
    assert list(ScoreSnapshot.objects.filter(run=result.run).values_list("partner_id", flat=True)) == [msp.id]
    msp.refresh_from_db()
    assert msp.health_model_id == only_model.id and msp.health_as_of == A
    assert not ScoreSnapshot.objects.filter(partner=reseller, model=inactive).exists()


def test_backfill_of_the_past_does_not_overwrite_current_score(only_model):
    partner = PartnerFactory()
    logins(partner, 10)
    scores_recompute(as_of=A)
    scores_recompute(as_of=A - datetime.timedelta(days=60))
    partner.refresh_from_db()
    assert partner.health_as_of == A and partner.health_score == 100.0


def test_backfill_weekly_history(only_model):
    partner = PartnerFactory()
    logins(partner, 10)
    results = scores_backfill(weeks=4, now=A)
    assert len(results) == 5
    assert ScoreSnapshot.objects.filter(partner=partner).count() == 5
    assert ScoreSnapshot.objects.aggregate(Max("as_of"))["as_of__max"] == A


@pytest.mark.postgres
def test_backfill_keeps_the_snapshot_statistics_current(only_model):
    """Each backfill step is planned knowing the history written by the steps before it."""
    for _ in range(3):
        logins(PartnerFactory(), 10)
    scores_backfill(weeks=3, now=A)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [ScoreSnapshot._meta.db_table])
        (estimated,) = cursor.fetchone()
        cursor.execute(
            "SELECT concat(most_common_vals::text, histogram_bounds::text) FROM pg_stats"
            " WHERE tablename = %s AND attname = 'as_of'",
            [ScoreSnapshot._meta.db_table],
        )
        (known,) = cursor.fetchone()
    assert estimated == ScoreSnapshot.objects.count() == 12
    earliest = (A - datetime.timedelta(weeks=3)).replace(hour=0)
    assert f"{earliest:%Y-%m-%d %H:%M:%S}" in known


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_failed_run_leaves_no_partial_snapshots():
    ScoringModel.objects.update(is_active=False)
    model = simple_model()
    partners = [PartnerFactory() for _ in range(4)]
    for p in partners:
        logins(p, 5)
    scores_recompute(as_of=A - datetime.timedelta(days=7))
    before = list(Partner.objects.order_by("id").values_list("health_score", "health_as_of"))
    # A real database failure in the middle of the snapshot writes: the third partner's row is refused.
    victim = partners[2].id
    with connection.cursor() as cursor:
        cursor.execute(
            f"""CREATE FUNCTION refuse_victim() RETURNS trigger AS $$ BEGIN
                  IF NEW.partner_id = {victim} THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW;
                END $$ LANGUAGE plpgsql;
                CREATE TRIGGER refuse_victim BEFORE INSERT ON health_scoresnapshot
                  FOR EACH ROW EXECUTE FUNCTION refuse_victim();"""
        )
    # Whatever the run wrote before the refused row must be rolled back with it.
    try:
        with pytest.raises(Exception, match="injected failure"):
            scores_recompute(as_of=A)
        assert not ScoreSnapshot.objects.filter(as_of=A).exists()
        assert list(Partner.objects.order_by("id").values_list("health_score", "health_as_of")) == before
        failed = ScoreRun.objects.get(as_of=A)
        assert failed.status == ScoreRun.Status.FAILED and "injected failure" in failed.error
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_victim ON health_scoresnapshot; DROP FUNCTION refuse_victim();")
    assert scores_recompute(as_of=A).snapshots == 4
    assert model.snapshots.filter(as_of=A).count() == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_failed_partner_update_fails_the_run_whole():
    """The partner rows are updated by a helper thread on the run's connection: its failure is the run's."""
    import gc

    ScoringModel.objects.update(is_active=False)
    simple_model()
    partners = [PartnerFactory() for _ in range(3)]
    for p in partners:
        logins(p, 5)
    scores_recompute(as_of=A - datetime.timedelta(days=7))
    before = list(Partner.objects.order_by("id").values_list("health_score", "health_as_of"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""CREATE FUNCTION refuse_partner() RETURNS trigger AS $$ BEGIN
                  IF NEW.id = {partners[1].id} AND NEW.health_as_of IS DISTINCT FROM OLD.health_as_of
                  THEN RAISE EXCEPTION 'injected partner failure'; END IF; RETURN NEW;
                END $$ LANGUAGE plpgsql;
                CREATE TRIGGER refuse_partner BEFORE UPDATE ON prm_partner
                  FOR EACH ROW EXECUTE FUNCTION refuse_partner();"""
        )
    try:
        with pytest.raises(Exception, match="injected partner failure"):
            scores_recompute(as_of=A)
        assert not ScoreSnapshot.objects.filter(as_of=A).exists()
        assert list(Partner.objects.order_by("id").values_list("health_score", "health_as_of")) == before
        assert ScoreRun.objects.get(as_of=A).status == ScoreRun.Status.FAILED
        # The collector resumed and the connection is this thread's alone again.
        assert gc.isenabled() and not connection.allow_thread_sharing
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_partner ON prm_partner; DROP FUNCTION refuse_partner();")
    assert scores_recompute(as_of=A).snapshots == 3
    assert set(Partner.objects.values_list("health_as_of", flat=True)) == {A}


@pytest.mark.postgres
def test_copy_text_keeps_backslashes_and_control_characters(db):
    """What the snapshot COPY writes reads back as the same JSON, whatever its strings hold."""
    import orjson

    from health.services import _copy_json, _copy_number

    value = [["a\\b", "tab\there", "line\nbreak", 'quote"', "\\N", "\u00e9\u2603"], {"k\\": None}]
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE copied (doc text, number float8, nothing float8)")
        with cursor.cursor.copy("COPY copied (doc, number, nothing) FROM STDIN") as copy:
            copy.write(f"{_copy_json(value)}\t{_copy_number(0.1 + 0.2)}\t{_copy_number(None)}\n")
        cursor.execute("SELECT doc, number, nothing FROM copied")
        doc, number, nothing = cursor.fetchone()
    assert orjson.loads(doc) == value
    assert number == 0.1 + 0.2 and nothing is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_runs_never_overlap():
    ScoringModel.objects.update(is_active=False)
    simple_model()
    PartnerFactory()
    RecomputeLock.objects.get_or_create(name="scores")
    holding, release = threading.Event(), threading.Event()

    def hold_lock():
        try:
            with transaction.atomic():
                RecomputeLock.objects.select_for_update().get(name="scores")
                holding.set()
                release.wait(20)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(RecomputeBusy):
            scores_recompute(as_of=A, wait=False)
        skipped = ScoreRun.objects.get(as_of=A)
        assert skipped.status == ScoreRun.Status.SKIPPED and "another recompute" in skipped.error
        assert not ScoreSnapshot.objects.exists()
    finally:
        release.set()
        holder.join()
    # Once the lock is free, a waiting run goes ahead.
    assert scores_recompute(as_of=A, wait=True).snapshots == 1


def test_query_count_does_not_grow_with_partners(only_model, django_assert_max_num_queries):
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    def queries_for(n: int) -> int:
        for _ in range(n):
            logins(PartnerFactory(), 3)
        with CaptureQueriesContext(conn) as ctx:
            scores_recompute(as_of=A + datetime.timedelta(minutes=n))
        return len(ctx.captured_queries)

    small = queries_for(3)
    large = queries_for(30)
    assert small == large


def test_partial_recompute_ranks_among_whole_population(db):
    ScoringModel.objects.update(is_active=False)
    simple_model(method="percentile")
    partners = [PartnerFactory() for _ in range(5)]
    for count, partner in enumerate(partners, start=1):
        logins(partner, count)
    scores_recompute(as_of=A)
    full = dict(ScoreSnapshot.objects.values_list("partner_id", "score"))
    result = scores_recompute(as_of=A, partners=Partner.objects.filter(pk=partners[1].pk))
    assert result.snapshots == 1
    assert ScoreSnapshot.objects.get(partner=partners[1], as_of=A).score == full[partners[1].id] == 25.0


def test_ingestion_queues_a_rescore_and_the_sweep_does_it(only_model, django_capture_on_commit_callbacks):
    from health.services import pending_recompute
    from prm.inputs import ActivityInput, validate_batch
    from prm.services import activities_ingest

    partner = PartnerFactory(external_id="P-Q")
    item = {
        "partner": "P-Q",
        "kind": "portal_login",
        "occurred_at": "2026-09-30T10:00:00Z",
        "quantity": 10,
        "source": "crm",
        "external_id": "q-1",
    }
    with django_capture_on_commit_callbacks(execute=True):
        activities_ingest(items=validate_batch(ActivityInput, [item], key_fields=("source", "external_id")))
    assert list(PendingRecompute.objects.values_list("partner_id", flat=True)) == [partner.id]
    result = pending_recompute()
    assert result.snapshots == 1 and result.run.trigger == "ingest"
    assert not PendingRecompute.objects.exists()
    partner.refresh_from_db()
    assert partner.health_score is not None


def test_components_are_stored_as_compact_rows_and_read_as_dicts(only_model):
    partner = PartnerFactory()
    logins(partner, 5)
    scores_recompute(as_of=A)
    snapshot = ScoreSnapshot.objects.get(partner=partner)
    assert snapshot.components == [
        {
            "kpi": "portal_logins",
            "category": "engagement",
            "raw": 5.0,
            "normalized": 50.0,
            "weight": 1.0,
            "contribution": 50.0,
            "included": True,
        }
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT components FROM health_scoresnapshot WHERE id = %s", [snapshot.pk])
        (stored,) = cursor.fetchone()
    assert json.loads(stored) == [["portal_logins", "engagement", 5.0, 50.0, 1.0, 50.0]]
    # A missing value excluded from the score: not included, whatever else the row says.
    assert components_expand([["a", "engagement", None, None, 2.0, 0.0]])[0]["included"] is False


def test_explanations_stored_as_dicts_still_read(only_model):
    """Snapshots written before the compact form keep their component dicts as they were."""
    partner = PartnerFactory()
    scores_recompute(as_of=A)
    old = [
        {"kpi": "portal_logins", "raw": 1.0, "normalized": 10.0, "weight": 1.0, "contribution": 10.0, "included": True}
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE health_scoresnapshot SET components = %s WHERE partner_id = %s", [json.dumps(old), partner.pk]
        )
    assert ScoreSnapshot.objects.get(partner=partner).components == old
    assert list(ScoreSnapshot.objects.filter(partner=partner).values_list("components", flat=True)) == [old]
