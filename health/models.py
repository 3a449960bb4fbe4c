"""Scoring models (how health is scored), score snapshots (what it was), runs and the recompute queue."""

from decimal import Decimal

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from health.scoring import components_compact, components_expand
from prm.models import Partner, Tier

PERCENT = [MinValueValidator(0), MaxValueValidator(100)]


class ComponentsField(models.Field):
    """A snapshot's explanation: component dicts in Python, compact JSON text in the database.

    Every recompute writes one per scored partner (100,000 a day at the largest size measured). As rows of
    values without repeated keys they are half the size, and as text PostgreSQL stores them without parsing
    them into jsonb, which nothing would query: together a quarter of the cost of writing the dicts as jsonb
    (docs/benchmarks.md, "Recompute"). Explanations stored as dicts (before the compact form) read as they are.
    """

    description = "Score components (compact JSON text)"

    def db_type(self, connection):
        return "text"

    def from_db_value(self, value, expression, connection):
        return None if value is None else components_expand(orjson.loads(value))

    def to_python(self, value):
        return components_expand(orjson.loads(value)) if isinstance(value, str) else value

    def get_prep_value(self, value):
        return None if value is None else orjson.dumps(components_compact(value)).decode()

    def value_to_string(self, obj):
        return self.get_prep_value(self.value_from_object(obj))


class ScoringModel(models.Model):
    """A way to score partner health: components (weighted KPIs), thresholds and the partners it applies to."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, help_text="Active models score partners on schedule.")
    priority = models.PositiveIntegerField(
        default=100, help_text="When several active models match a partner, the lowest number wins (then lowest id)."
    )
    segment_types = models.JSONField(
        default=list, blank=True, help_text="Partner types this model applies to; empty = all types."
    )
    segment_tiers = models.ManyToManyField(
        Tier, blank=True, related_name="scoring_models", help_text="Tiers this model applies to; empty = all tiers."
    )
    window_days = models.PositiveIntegerField(default=90, validators=[MinValueValidator(1), MaxValueValidator(3650)])
    trend_days = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)])
    healthy_threshold = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(70), validators=PERCENT)
    at_risk_threshold = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(40), validators=PERCENT)
    alert_threshold = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(40), validators=PERCENT)
    rearm_points = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(5), validators=PERCENT)
    drop_points = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(15), validators=PERCENT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(m2m_fields=[segment_tiers])

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(at_risk_threshold__lte=models.F("healthy_threshold")),
                name="scoringmodel_thresholds_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        if (
            self.at_risk_threshold is not None
            and self.healthy_threshold is not None
            and self.at_risk_threshold > self.healthy_threshold
        ):
            errors["at_risk_threshold"] = "The at-risk threshold must not be above the healthy threshold."
        unknown = sorted(set(self.segment_types or []) - set(Partner.Type.values))
        if unknown:
            errors["segment_types"] = f"Unknown partner type(s): {', '.join(unknown)}."
        if errors:
            raise ValidationError(errors)

    def band_for(self, score: float | None) -> str:
        if score is None:
            return Partner.Band.NO_DATA
        if score >= float(self.healthy_threshold):
            return Partner.Band.HEALTHY
        if score < float(self.at_risk_threshold):
            return Partner.Band.AT_RISK
        return Partner.Band.WATCH


class ScoringComponent(models.Model):
    """One KPI in a scoring model: how its raw value becomes 0-100 and how much it weighs."""

    class Method(models.TextChoices):
        TARGET = "target"
        RANGE = "range"
        PERCENTILE = "percentile"

    class Direction(models.TextChoices):
        HIGHER = "higher", "Higher is better"
        LOWER = "lower", "Lower is better"

    class Missing(models.TextChoices):
        EXCLUDE = "exclude", "Exclude (renormalize the other weights)"
        ZERO = "zero", "Score 0"
        NEUTRAL = "neutral", "Score 50"

    model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="components")
    kpi = models.CharField(max_length=50, help_text="Key of a KPI of the catalogue.")
    weight = models.DecimalField(max_digits=8, decimal_places=3, validators=[MinValueValidator(Decimal("0.001"))])
    method = models.CharField(max_length=12, choices=Method.choices, default=Method.TARGET)
    target = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    lower = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    upper = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    direction = models.CharField(
        max_length=6, choices=Direction.choices, blank=True, help_text="Blank: the KPI's own better direction."
    )
    missing = models.CharField(max_length=8, choices=Missing.choices, default=Missing.EXCLUDE)
    history = HistoricalRecords()

    class Meta:
        ordering = ["model", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "kpi"], name="component_kpi_once_per_model"),
            models.CheckConstraint(condition=Q(weight__gt=0), name="component_weight_positive"),
            models.CheckConstraint(condition=~Q(method="target") | Q(target__gt=0), name="component_target_positive"),
            models.CheckConstraint(
                condition=~Q(method="range") | Q(lower__lt=models.F("upper")), name="component_range_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kpi} ({self.weight})"

    def clean(self) -> None:
        from kpis.registry import kpi_catalogue

        errors = {}
        if self.kpi and self.kpi not in kpi_catalogue():
            errors["kpi"] = f"Unknown KPI '{self.kpi}'."
        if self.weight is not None and self.weight <= 0:
            errors["weight"] = "The weight must be greater than 0."
        if self.method == self.Method.TARGET and (self.target is None or self.target <= 0):
            errors["target"] = "The target method needs a target greater than 0."
        if self.method == self.Method.RANGE:
            if self.lower is None or self.upper is None:
                errors["lower"] = "The range method needs both lower and upper."
            elif self.lower >= self.upper:
                errors["upper"] = "Upper must be greater than lower."
        if errors:
            raise ValidationError(errors)


class ScoreRun(models.Model):
    """One recompute: when, for which instant and model, how it ended."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"

    as_of = models.DateTimeField()
    model = models.ForeignKey(
        ScoringModel, null=True, blank=True, on_delete=models.SET_NULL, help_text="Empty: each partner's own model."
    )
    trigger = models.CharField(max_length=20, default="command")
    partial = models.BooleanField(default=False, help_text="Only some partners were recomputed.")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    partners_scored = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["status", "started_at"])]

    def __str__(self) -> str:
        return f"Run {self.pk} as of {self.as_of:%Y-%m-%d %H:%M} ({self.status})"


class ScoreSnapshot(models.Model):
    """A partner's health under one model at one instant, with every component's part in it."""

    # No single-column indexes on partner and model: the (partner, model, as_of) and (model, as_of) indexes
    # below serve them, and every recompute writes a snapshot per partner through all of the table's indexes.
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="score_snapshots", db_index=False)
    # The model and the run are not checked by the database: every one of a run's 100,000 rows names the same
    # model and run, which the recompute has just read or created under its lock, and PostgreSQL's checks (one
    # per row and key, at commit) took 1.7 s of a 100,000-partner recompute. Deleting either is Django's
    # (CASCADE, SET_NULL), as it is for every relation here.
    model = models.ForeignKey(
        ScoringModel, on_delete=models.CASCADE, related_name="snapshots", db_index=False, db_constraint=False
    )
    as_of = models.DateTimeField()
    # Kept exact (double precision): the band is decided on the exact score, as SCORING.md defines it.
    score = models.FloatField(null=True)
    band = models.CharField(max_length=10, choices=Partner.Band.choices)
    trend = models.FloatField(null=True)
    # {category: sub-score or null}
    category_scores = models.JSONField(default=dict)
    # [{kpi, category, raw, normalized, weight, contribution, included}], in the model's component order
    components = ComponentsField(default=list)
    window_days = models.PositiveIntegerField()
    run = models.ForeignKey(
        ScoreRun, null=True, on_delete=models.SET_NULL, related_name="snapshots", db_constraint=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-as_of"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "model", "as_of"], name="snapshot_once_per_partner_model_instant"
            )
        ]
        indexes = [models.Index(fields=["model", "as_of"], name="snapshot_model_time")]

    def __str__(self) -> str:
        return f"{self.partner_id} {self.as_of:%Y-%m-%d}: {self.score}"


class PendingRecompute(models.Model):
    """Partners whose data changed since their last score; swept every minute by a beat task (debounce)."""

    partner = models.OneToOneField(Partner, on_delete=models.CASCADE, primary_key=True, related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"pending {self.partner_id}"


class RecomputeLock(models.Model):
    """A single row locked by every recompute so that two never overlap (on any database)."""

    name = models.CharField(max_length=50, primary_key=True)
    held_by_run = models.ForeignKey(ScoreRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """A partner crossed a model's alert threshold or dropped fast, at one instant. Recorded once."""

    class Kind(models.TextChoices):
        THRESHOLD = "threshold", "Fell below the alert threshold"
        DROP = "drop", "Dropped fast"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="alerts")
    model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    as_of = models.DateTimeField()
    score = models.FloatField(null=True)
    previous_score = models.FloatField(null=True, help_text="Score of the snapshot compared with.")
    trend = models.FloatField(null=True)
    band = models.CharField(max_length=10, choices=Partner.Band.choices)
    # The components that moved most: [{kpi, category, raw_before, raw_after, delta}], biggest first.
    reasons = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="acknowledged_alerts"
    )
    acknowledgment_note = models.TextField(blank=True)
    follow_up = models.ForeignKey(
        "kpis.ActionItem", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )

    class Meta:
        ordering = ["-as_of", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "model", "kind", "as_of"], name="alert_once_per_instant")
        ]
        indexes = [
            models.Index(fields=["partner", "model", "kind", "as_of"], name="alert_partner_kind_time"),
            models.Index(fields=["acknowledged_at", "as_of"], name="alert_open_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.partner_id} at {self.as_of:%Y-%m-%d}"


class AlertDelivery(models.Model):
    """One email of one alert to one recipient: claimed by a sender with a conditional update."""

    class Mode(models.TextChoices):
        IMMEDIATE = "immediate"
        DIGEST = "digest"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed", "Failed permanently"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    email = models.EmailField()
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.IMMEDIATE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alert", "email"], name="delivery_once_per_recipient")]
        indexes = [models.Index(fields=["status", "mode"], name="delivery_status_mode")]

    def __str__(self) -> str:
        return f"{self.email}: {self.status}"


class AlertPreference(models.Model):
    """How a user wants alert emails: one per alert, or one digest a day at a local hour."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="alert_preference"
    )
    mode = models.CharField(max_length=10, choices=AlertDelivery.Mode.choices, default=AlertDelivery.Mode.IMMEDIATE)
    digest_hour = models.PositiveSmallIntegerField(default=8, validators=[MaxValueValidator(23)])
    time_zone = models.CharField(max_length=64, default="UTC")

    def __str__(self) -> str:
        return f"{self.user}: {self.mode}"

    def clean(self) -> None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except Exception:
            raise ValidationError({"time_zone": f"Unknown time zone '{self.time_zone}'."})


class AlertSubscriber(models.Model):
    """Someone besides the partner's owner who receives a model's alerts (a user or a plain address)."""

    model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="subscribers")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    email = models.EmailField(blank=True, help_text="An address without a user account (immediate emails).")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(user__isnull=False) | ~Q(email=""), name="subscriber_user_or_email")
        ]

    def __str__(self) -> str:
        return str(self.user or self.email)


class CalibrationReport(models.Model):
    """A backtest of a scoring model against realized revenue, with suggested weights and a forecast."""

    model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="calibration_reports")
    as_of = models.DateTimeField(help_text="Nothing after this instant was read.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger = models.CharField(max_length=20, default="command")
    quarters = models.PositiveSmallIntegerField(help_text="Closed quarters asked for.")
    # CalibrationOptions: fall, at_risk_threshold, resamples, confidence, interval
    parameters = models.JSONField(default=dict)
    # Per-component correlations with intervals, score correlation, precision/recall, deciles,
    # current vs suggested weights with out-of-sample figures, forecast holdout error (health.calibration).
    results = models.JSONField(default=dict)
    verdict = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["model", "-created_at"], name="calibration_model_time")]

    def __str__(self) -> str:
        return f"Calibration of {self.model} as of {self.as_of:%Y-%m-%d}"


class PartnerForecast(models.Model):
    """One partner's predicted partner-sourced revenue for the three months after a report's instant."""

    report = models.ForeignKey(CalibrationReport, on_delete=models.CASCADE, related_name="forecasts")
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="forecasts")
    # The report's model, kept here so that "the partner's latest forecast under its model" is one index read.
    model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="+")
    predicted = models.FloatField()
    low = models.FloatField()
    high = models.FloatField()
    revenue_last_quarter = models.FloatField(help_text="Partner-sourced revenue of the three months before.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["report", "partner"], name="forecast_once_per_report")]
        indexes = [models.Index(fields=["partner", "model", "-report"], name="forecast_partner_latest")]

    def __str__(self) -> str:
        return f"{self.partner_id}: {self.predicted:.0f}"
