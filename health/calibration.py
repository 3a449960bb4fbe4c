"""Calibration: backtest a scoring model against realized revenue, suggest weights, forecast next-quarter revenue.

For each of the last closed calendar quarters, every partner's components are scored as of the quarter's
first instant with the registry and the scoring math (nothing after that instant is read), and set beside
the outcome: the partner-sourced revenue of that quarter. The whole report reads nothing after its own
as-of instant, so regenerating a past report on a database that has grown since gives the same figures.
The method is described in docs/scoring.md ("Calibration and forecast").
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.db.models import Min, Q, QuerySet
from django.utils import timezone
from scipy import optimize, stats

from health.models import CalibrationReport, PartnerForecast, RecomputeLock, ScoringModel
from health.scoring import NORMALIZED, ModelSpec, score_population
from health.services import model_spec, segment_filter
from kpis.periods import Period
from kpis.registry import kpi_catalogue, kpis_compute
from prm.models import Activity, Deal, Partner

logger = logging.getLogger(__name__)

REVENUE_KPI = "partner_sourced_revenue"
PIPELINE_KPI = "open_pipeline"
DEFAULT_QUARTERS = 8
DEFAULT_FALL = 0.30
DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
FORECAST_INTERVAL = 0.80
# Fewer usable quarters or partners than this and there is nothing to fit and test on.
MIN_QUARTERS = 2
MIN_PARTNERS = 20
# The ridge penalty of the forecast, on standardized inputs: small, only to keep the fit stable when
# components are nearly collinear (activity intensity and portal logins, say).
RIDGE_PENALTY = 1.0
SEED = 20260401
LOCK_NAME = "calibration"
# A component with this share of partners at full marks (or at none) barely ranks them: said on the report.
SATURATED = 0.8
BOOTSTRAP_CHUNK = 50
Progress = Callable[[str], None]


# Quarters ------------------------------------------------------------------------------------------


def _shift_months(instant: datetime.datetime, months: int) -> datetime.datetime:
    """The same wall-clock instant `months` calendar months later (earlier if negative), day clamped."""
    index = instant.year * 12 + instant.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    days = (datetime.date(year + month // 12, month % 12 + 1, 1) - datetime.date(year, month, 1)).days
    return instant.replace(year=year, month=month, day=min(instant.day, days))


def closed_quarters(as_of: datetime.datetime, count: int) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """The last `count` calendar quarters that ended at or before the instant, oldest first."""
    latest = Period.containing(as_of).previous()
    return [(quarter.start, quarter.end) for quarter in reversed(latest.back(count))]


def _local_shift(instant: datetime.datetime, months: int) -> datetime.datetime:
    # By wall clock in the project's zone: a quarter starts at local midnight whatever the UTC offset.
    zone = timezone.get_default_timezone()
    local = timezone.localtime(instant, zone).replace(tzinfo=None)
    return timezone.make_aware(_shift_months(local, months), zone)


def quarter_label(start: datetime.datetime) -> str:
    return Period.containing(start).key


# Reading one quarter -------------------------------------------------------------------------------


def population_at(model: ScoringModel, instant: datetime.datetime) -> QuerySet[Partner]:
    """The model's segment as it stood at an instant: partners that had joined and whose agreement had not ended.

    Partners who left since are included (they are the ones a score should have warned about); the segment
    is judged on today's types and tiers, which have no history of their own.
    """
    date = timezone.localtime(instant, timezone.get_default_timezone()).date()
    tiers = [tier.id for tier in model.segment_tiers.all()]
    return Partner.objects.filter(
        segment_filter(model.segment_types, tiers),
        Q(joined_on__isnull=True) | Q(joined_on__lte=date),
        Q(agreement_end__isnull=True) | Q(agreement_end__gt=date),
    )


@dataclass
class Features:
    """Each partner's inputs at one instant: normalized components, score, revenue so far and pipeline."""

    as_of: datetime.datetime
    partner_ids: np.ndarray
    components: np.ndarray  # partners x components, 0-100, NaN where excluded (missing data)
    score: np.ndarray  # NaN where no score
    revenue_before: np.ndarray  # partner-sourced revenue of the quarter before the instant
    pipeline: np.ndarray


@dataclass
class Quarter:
    start: datetime.datetime
    end: datetime.datetime
    features: Features
    revenue: np.ndarray  # the outcome: partner-sourced revenue in [start, end)

    @property
    def label(self) -> str:
        return quarter_label(self.start)

    @property
    def change(self) -> np.ndarray:
        """Revenue change against the quarter before, relative; NaN where there was none before."""
        before = self.features.revenue_before
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(before > 0, (self.revenue - before) / before, np.nan)


def _floats(values: dict[int, float | None], ids: list[int]) -> np.ndarray:
    return np.array([np.nan if values.get(pid) is None else float(values[pid]) for pid in ids], dtype=float)


def features_at(spec: ModelSpec, *, as_of: datetime.datetime, partners: QuerySet[Partner], catalogue: dict) -> Features:
    """Components, score, previous-quarter revenue and open pipeline of every partner at an instant.

    Three registry passes whatever the number of partners: the components (with the open pipeline), and
    the revenue of the three months before the instant.
    """
    keys = {c.kpi for c in spec.components} | {PIPELINE_KPI}
    raw = kpis_compute(keys=keys, as_of=as_of, window_days=spec.window_days, partners=partners, catalogue=catalogue)
    ids = sorted(raw[PIPELINE_KPI])
    scores = score_population(spec, raw, ids)
    kpis = [c.kpi for c in spec.components]
    matrix = np.full((len(ids), len(kpis)), np.nan)
    score = np.full(len(ids), np.nan)
    for row, pid in enumerate(ids):
        result = scores[pid]
        if result.score is not None:
            score[row] = result.score
        for column, component in enumerate(result.rows):
            if component[NORMALIZED] is not None:
                matrix[row, column] = component[NORMALIZED]
    before = kpis_compute(
        keys={REVENUE_KPI},
        as_of=as_of,
        window_days=as_of - _local_shift(as_of, -3),
        partners=partners,
        catalogue=catalogue,
    )[REVENUE_KPI]
    return Features(
        as_of=as_of,
        partner_ids=np.array(ids, dtype=np.int64),
        components=matrix,
        score=score,
        revenue_before=np.nan_to_num(_floats(before, ids)),
        pipeline=np.nan_to_num(_floats(raw[PIPELINE_KPI], ids)),
    )


def quarter_read(
    model: ScoringModel, spec: ModelSpec, *, start: datetime.datetime, end: datetime.datetime, catalogue: dict
) -> Quarter:
    partners = population_at(model, start)
    features = features_at(spec, as_of=start, partners=partners, catalogue=catalogue)
    outcome = kpis_compute(
        keys={REVENUE_KPI}, as_of=end, window_days=end - start, partners=partners, catalogue=catalogue
    )[REVENUE_KPI]
    ids = features.partner_ids.tolist()
    return Quarter(start=start, end=end, features=features, revenue=np.nan_to_num(_floats(outcome, ids)))


def first_data_at(as_of: datetime.datetime) -> datetime.datetime | None:
    """The instant of the earliest activity or deal registration recorded up to `as_of` (two index reads)."""
    instants = [
        Activity.objects.filter(occurred_at__lte=as_of).aggregate(first=Min("occurred_at"))["first"],
        Deal.objects.filter(registered_at__lte=as_of).aggregate(first=Min("registered_at"))["first"],
    ]
    instants = [instant for instant in instants if instant is not None]
    return min(instants) if instants else None


# Statistics ----------------------------------------------------------------------------------------


def within_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] among the non-missing values (ties share their average rank); NaN stays NaN."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return within_ranks(values[:, None])[:, 0]
    ranks = stats.rankdata(values, axis=0, nan_policy="omit")
    present = (~np.isnan(values)).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = (ranks - 1) / np.maximum(present - 1, 1)
    return np.where(np.isnan(values), np.nan, scaled)


def _pooled_ranks(quarters: list[Quarter], pick: Callable[[Quarter], np.ndarray]) -> np.ndarray:
    return np.concatenate([within_ranks(pick(q)) for q in quarters]) if quarters else np.empty(0)


@dataclass
class Correlation:
    rho: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _weighted_correlations(weights: np.ndarray, x: np.ndarray, y: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of x with y under row weights (one row of weights per resample)."""
    x0, y0 = np.where(present, x, 0.0), np.where(present, y, 0.0)
    sw = weights @ present
    with np.errstate(divide="ignore", invalid="ignore"):
        mx, my = (weights @ x0) / sw, (weights @ y0) / sw
        vx = (weights @ (x0 * x0)) / sw - mx * mx
        vy = (weights @ (y0 * y0)) / sw - my * my
        cov = (weights @ (x0 * y0)) / sw - mx * my
        return cov / np.sqrt(vx * vy)


def rank_correlations(
    x_ranks: np.ndarray, y_ranks: np.ndarray, *, resamples: int, confidence: float, seed: int = SEED
) -> list[Correlation]:
    """Rank correlation of each column of x with y (rows where both are present), with a bootstrap interval.

    The inputs are ranks within each quarter, so the Pearson correlation of them is a Spearman correlation
    pooled over quarters. The interval is the percentile interval of a Poisson bootstrap (each row drawn
    Poisson(1) times, numpy's Generator with a fixed seed): the same data always gives the same interval,
    and every resample is a pair of matrix products instead of a re-sort.
    """
    x = np.asarray(x_ranks, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(y_ranks, dtype=float)[:, None]
    present = (~np.isnan(x) & ~np.isnan(y)).astype(float)
    counts = present.sum(axis=0).astype(int)
    x, yy = np.nan_to_num(x), np.nan_to_num(np.broadcast_to(y, x.shape))
    point = _weighted_correlations(np.ones((1, len(x))), x, yy, present)[0]
    rng = np.random.default_rng(seed)
    draws = []
    for done in range(0, resamples, BOOTSTRAP_CHUNK):
        weights = rng.poisson(1.0, size=(min(BOOTSTRAP_CHUNK, resamples - done), len(x))).astype(float)
        draws.append(_weighted_correlations(weights, x, yy, present))
    tail = (1 - confidence) / 2
    resampled = np.vstack(draws) if draws else np.full((1, x.shape[1]), np.nan)
    results = []
    for column in range(x.shape[1]):
        column_draws = resampled[:, column]
        column_draws = column_draws[~np.isnan(column_draws)]
        rho = point[column]
        if counts[column] < 3 or np.isnan(rho):
            results.append(Correlation(rho=None, low=None, high=None, n=int(counts[column])))
            continue
        low, high = np.quantile(column_draws, [tail, 1 - tail]) if len(column_draws) else (np.nan, np.nan)
        results.append(Correlation(rho=_round(rho), low=_round(low), high=_round(high), n=int(counts[column])))
    return results


def _difference(
    a_ranks: np.ndarray, b_ranks: np.ndarray, y_ranks: np.ndarray, *, resamples: int, confidence: float
) -> Correlation:
    """rho(a, y) - rho(b, y) on the same rows, with a paired bootstrap interval (the same resamples for both)."""
    x = np.column_stack([a_ranks, b_ranks])
    y = np.asarray(y_ranks, dtype=float)
    keep = ~np.isnan(x).any(axis=1) & ~np.isnan(y)
    x, y = x[keep], y[keep][:, None]
    if len(x) < 3:
        return Correlation(rho=None, low=None, high=None, n=int(len(x)))
    present = np.ones_like(x)
    yy = np.broadcast_to(y, x.shape)
    point = _weighted_correlations(np.ones((1, len(x))), x, yy, present)[0]
    rng = np.random.default_rng(SEED + 1)
    draws = []
    for done in range(0, resamples, BOOTSTRAP_CHUNK):
        weights = rng.poisson(1.0, size=(min(BOOTSTRAP_CHUNK, resamples - done), len(x))).astype(float)
        pair = _weighted_correlations(weights, x, yy, present)
        draws.append(pair[:, 0] - pair[:, 1])
    differences = np.concatenate(draws)
    differences = differences[~np.isnan(differences)]
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail]) if len(differences) else (np.nan, np.nan)
    return Correlation(rho=_round(point[0] - point[1]), low=_round(low), high=_round(high), n=int(len(x)))


def _round(value, digits: int = 4) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or np.isnan(value):
        return None
    return round(float(value), digits)


def blend(components: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The score of SCORING.md from normalized components: sum(w s) / sum(w) over the included ones.

    `components` already holds the missing-value policy (NaN = excluded), so this is score_population's
    weighted mean with other weights; a test holds the two equal.
    """
    present = ~np.isnan(components)
    total = (present * weights).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, (np.nan_to_num(components) * weights).sum(axis=1) / total, np.nan)


def fall_prediction(flagged: np.ndarray, revenue_before: np.ndarray, revenue: np.ndarray, *, fall: float) -> dict:
    """Precision and recall of `flagged` at predicting a revenue fall of `fall` or more (partners with revenue before)."""
    eligible = revenue_before > 0
    fell = eligible & (revenue <= (1 - fall) * revenue_before)
    flagged = flagged & eligible
    hits = int((flagged & fell).sum())
    return {
        "partners": int(eligible.sum()),
        "fell": int(fell.sum()),
        "flagged": int(flagged.sum()),
        "true_positives": hits,
        "precision": _round(hits / flagged.sum()) if flagged.sum() else None,
        "recall": _round(hits / fell.sum()) if fell.sum() else None,
        "base_rate": _round(fell.sum() / eligible.sum()) if eligible.sum() else None,
    }


def deciles(score: np.ndarray, revenue: np.ndarray, revenue_ranks: np.ndarray, fell: np.ndarray) -> list[dict]:
    """Partners split into ten equal groups by score (lowest first) with the revenue each group realized."""
    keep = ~np.isnan(score)
    score, revenue, revenue_ranks, fell = score[keep], revenue[keep], revenue_ranks[keep], fell[keep]
    if len(score) < 10:
        return []
    order = np.argsort(score, kind="stable")
    points = []
    for index, group in enumerate(np.array_split(order, 10), start=1):
        points.append(
            {
                "decile": index,
                "partners": int(len(group)),
                "score_low": _round(score[group].min(), 1),
                "score_high": _round(score[group].max(), 1),
                "score_mean": _round(score[group].mean(), 1),
                "revenue_mean": _round(revenue[group].mean(), 0),
                "revenue_median": _round(np.median(revenue[group]), 0),
                "revenue_rank_mean": _round(revenue_ranks[group].mean()),
                "fell_share": _round(fell[group].mean()) if len(group) else None,
            }
        )
    return points


# Suggested weights ---------------------------------------------------------------------------------


def _column_mean(values: np.ndarray) -> np.ndarray:
    # A component without any data (no business reviews recorded, say) is all NaN: its mean is NaN, quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0)


def _column_sd(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(values, axis=0)


def fit_weights(components: np.ndarray, revenue_ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative weights on the components that best rank the outcome (scipy's NNLS).

    Components are standardized (mean 0, sd 1, a missing value counts as the mean) and the target is the
    centred within-quarter rank of revenue, so neither needs an intercept. A standardized coefficient b
    means a weight of b / sd on the 0-100 score scale. Returns (weights on the score scale, coefficients).
    """
    mean, sd = _column_mean(components), _column_sd(components)
    usable = np.nan_to_num(sd) > 1e-9
    z = np.where(usable, (components - np.nan_to_num(mean)) / np.where(usable, sd, 1.0), 0.0)
    z = np.nan_to_num(z)
    target = revenue_ranks - 0.5
    coefficients, _ = optimize.nnls(z, target)
    coefficients = np.where(usable, coefficients, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where(usable, coefficients / np.where(usable, sd, 1.0), 0.0)
    return weights, coefficients


# Forecast ------------------------------------------------------------------------------------------


def _design(features: Features, fill: np.ndarray) -> np.ndarray:
    components = np.where(np.isnan(features.components), fill, features.components) / 100.0
    return np.column_stack([np.sqrt(features.revenue_before), np.sqrt(features.pipeline), components])


@dataclass
class ForecastFit:
    coefficients: np.ndarray  # intercept first, on the standardized inputs
    mean: np.ndarray
    sd: np.ndarray
    fill: np.ndarray

    def predict_root(self, features: Features) -> np.ndarray:
        """The prediction on the square-root scale it is fitted on (never below zero)."""
        x = (_design(features, self.fill) - self.mean) / self.sd
        return np.maximum(self.coefficients[0] + x @ self.coefficients[1:], 0.0)


def forecast_fit(quarters: list[Quarter], *, penalty: float = RIDGE_PENALTY) -> ForecastFit:
    """Ridge regression of sqrt(next-quarter revenue) on sqrt revenue, sqrt open pipeline and the components.

    The square root tames the few very large partners without the log's trouble with the many quarters of
    zero revenue (a log model predicts a geometric mean, far below what active partners bring). Solved as an
    ordinary least-squares problem with the penalty rows appended (numpy.linalg.lstsq); the intercept is not
    penalized.
    """
    fill = np.nan_to_num(_column_mean(np.vstack([q.features.components for q in quarters])), nan=0.0)
    x = np.vstack([_design(q.features, fill) for q in quarters])
    y = np.sqrt(np.concatenate([q.revenue for q in quarters]))
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    z = (x - mean) / sd
    columns = z.shape[1]
    design = np.vstack(
        [
            np.column_stack([np.ones(len(z)), z]),
            np.column_stack([np.zeros(columns), np.eye(columns) * math.sqrt(penalty)]),
        ]
    )
    target = np.concatenate([y, np.zeros(columns)])
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    return ForecastFit(coefficients=coefficients, mean=mean, sd=sd, fill=fill)


INTERVAL_BINS = 5


@dataclass
class Intervals:
    """Residual quantiles of the held-out quarter by prediction level (on the square-root scale).

    Large partners miss by more money than small ones: each fifth of the predictions gets the quantiles of
    its own residuals, so an interval is as wide as the misses of similar partners were.
    """

    edges: np.ndarray  # inner bin edges of the predictions
    low: np.ndarray  # per bin
    high: np.ndarray

    @classmethod
    def fit(cls, predicted_root: np.ndarray, actual: np.ndarray, *, interval: float) -> Intervals:
        bins = max(1, min(INTERVAL_BINS, len(actual) // 20))
        edges = np.quantile(predicted_root, np.linspace(0, 1, bins + 1)[1:-1]) if bins > 1 else np.empty(0)
        index = np.searchsorted(edges, predicted_root, side="right")
        residuals = np.sqrt(actual) - predicted_root
        tail = (1 - interval) / 2
        low, high = np.zeros(bins), np.zeros(bins)
        for b in range(bins):
            chosen = residuals[index == b]
            chosen = chosen if len(chosen) else residuals
            low[b], high[b] = np.quantile(chosen, [tail, 1 - tail])
        return cls(edges=edges, low=low, high=high)

    def bounds(self, predicted_root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.searchsorted(self.edges, predicted_root, side="right")
        low = np.square(np.maximum(predicted_root + self.low[index], 0.0))
        high = np.square(np.maximum(predicted_root + self.high[index], 0.0))
        return low, high


def _mape(predicted: np.ndarray, actual: np.ndarray) -> float | None:
    nonzero = actual > 0
    if not nonzero.any():
        return None
    return _round(np.mean(np.abs(predicted[nonzero] - actual[nonzero]) / actual[nonzero]))


def _wape(predicted: np.ndarray, actual: np.ndarray) -> float | None:
    """Weighted absolute percentage error: total miss over total revenue (zero actuals count too)."""
    return _round(np.abs(predicted - actual).sum() / actual.sum()) if actual.sum() > 0 else None


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return _round(stats.spearmanr(a, b).statistic)


# The report ----------------------------------------------------------------------------------------


@dataclass
class CalibrationOptions:
    quarters: int = DEFAULT_QUARTERS
    fall: float = DEFAULT_FALL
    at_risk_threshold: float | None = None  # default: the model's own
    resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    interval: float = FORECAST_INTERVAL

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class CalibrationResult:
    results: dict
    verdict: str
    forecasts: list[tuple[int, float, float, float, float]] = field(default_factory=list)


def calibration_compute(
    *,
    model: ScoringModel,
    as_of: datetime.datetime,
    options: CalibrationOptions | None = None,
    progress: Progress | None = None,
) -> CalibrationResult:
    """Backtest, suggested weights and forecast of one model as of an instant. Reads, writes nothing."""
    options = options or CalibrationOptions()
    if timezone.is_naive(as_of):
        raise ValueError("as_of must be timezone-aware")
    spec = model_spec(model)
    catalogue = kpi_catalogue()
    kpis = [c.kpi for c in spec.components]
    at_risk = float(model.at_risk_threshold) if options.at_risk_threshold is None else options.at_risk_threshold
    first = first_data_at(as_of)
    quarters: list[Quarter] = []
    skipped = []
    for start, end in closed_quarters(as_of, options.quarters):
        label = quarter_label(start)
        if first is None or start - datetime.timedelta(days=spec.window_days) < first:
            skipped.append(
                {"quarter": label, "reason": "its scoring window reaches back before the first recorded data"}
            )
            continue
        if progress:
            progress(f"{model.name}: {label}")
        quarter = quarter_read(model, spec, start=start, end=end, catalogue=catalogue)
        if len(quarter.revenue) < MIN_PARTNERS:
            skipped.append({"quarter": label, "reason": f"fewer than {MIN_PARTNERS} partners"})
            continue
        quarters.append(quarter)

    results: dict = {
        "as_of": as_of.isoformat(),
        "model": {"id": model.pk, "name": model.name},
        "components": [],
        "quarters": [
            {
                "quarter": q.label,
                "start": q.start.isoformat(),
                "end": q.end.isoformat(),
                "partners": int(len(q.revenue)),
                "revenue": _round(q.revenue.sum(), 0),
                "score_rho": _spearman_nan(q.features.score, q.revenue),
            }
            for q in quarters
        ],
        "skipped_quarters": skipped,
        "fall": options.fall,
        "at_risk_threshold": at_risk,
    }
    labels = {key: (catalogue[key].label if key in catalogue else key) for key in kpis}
    if not quarters:
        results.update(
            history="too_little", weights={"status": "too_little_history"}, forecast={"status": "too_little_history"}
        )
        verdict = (
            "Too little history: no closed quarter has a full scoring window of data before it "
            f"(asked for the last {options.quarters}). Nothing can be measured yet."
        )
        results["components"] = [
            {"kpi": c.kpi, "label": labels[c.kpi], "category": c.category, "weight": c.weight} for c in spec.components
        ]
        return CalibrationResult(results=results, verdict=verdict)

    revenue_ranks = _pooled_ranks(quarters, lambda q: q.revenue)
    change_ranks = _pooled_ranks(quarters, lambda q: q.change)
    component_ranks = np.vstack([within_ranks(q.features.components) for q in quarters])
    score_ranks = _pooled_ranks(quarters, lambda q: q.features.score)
    common = {"resamples": options.resamples, "confidence": options.confidence}
    with_revenue = rank_correlations(component_ranks, revenue_ranks, **common)
    with_change = rank_correlations(component_ranks, change_ranks, **common)
    pooled = np.vstack([q.features.components for q in quarters])
    present = (~np.isnan(pooled)).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A component at full marks (or none) for most partners cannot tell them apart, whatever its weight.
        full_marks = np.where(present > 0, (pooled >= 100).sum(axis=0) / present, np.nan)
        no_marks = np.where(present > 0, (pooled <= 0).sum(axis=0) / present, np.nan)
    results["components"] = [
        {
            "kpi": c.kpi,
            "label": labels[c.kpi],
            "category": c.category,
            "weight": c.weight,
            "revenue": with_revenue[i].as_dict(),
            "change": with_change[i].as_dict(),
            "full_marks": _round(full_marks[i]),
            "no_marks": _round(no_marks[i]),
            "saturated": bool(max(np.nan_to_num(full_marks[i]), np.nan_to_num(no_marks[i])) >= SATURATED),
        }
        for i, c in enumerate(spec.components)
    ]
    results["score"] = {
        "revenue": rank_correlations(score_ranks, revenue_ranks, **common)[0].as_dict(),
        "change": rank_correlations(score_ranks, change_ranks, **common)[0].as_dict(),
    }
    score = np.concatenate([q.features.score for q in quarters])
    before = np.concatenate([q.features.revenue_before for q in quarters])
    revenue = np.concatenate([q.revenue for q in quarters])
    flagged = ~np.isnan(score) & (np.nan_to_num(score, nan=np.inf) < at_risk)
    results["at_risk"] = fall_prediction(flagged, before, revenue, fall=options.fall)
    fell = (before > 0) & (revenue <= (1 - options.fall) * before)
    results["deciles"] = deciles(score, revenue, revenue_ranks, fell.astype(float))

    verdicts = [
        _score_sentence(results["score"]["revenue"], len(quarters)),
        _at_risk_sentence(results["at_risk"], options),
    ]
    if len(quarters) < MIN_QUARTERS:
        results["history"] = "too_little"
        results["weights"] = {"status": "too_little_history"}
        results["forecast"] = {"status": "too_little_history"}
        verdicts.append(
            f"Too little history to suggest weights or forecast: {len(quarters)} usable closed quarter(s), "
            f"at least {MIN_QUARTERS} are needed (earlier ones to fit, a later one to test)."
        )
        return CalibrationResult(results=results, verdict=" ".join(verdicts))

    results["history"] = "enough"
    tested = max(1, len(quarters) // 3)
    train, test = quarters[:-tested], quarters[-tested:]
    saturated = np.array([row["saturated"] for row in results["components"]], dtype=bool)
    weights_result = _weights_section(spec, labels, train, test, at_risk=at_risk, options=options, saturated=saturated)
    results["weights"] = weights_result
    verdicts.append(weights_result["verdict"])

    forecast_result, forecasts = _forecast_section(
        model, spec, quarters, train, test, as_of=as_of, options=options, catalogue=catalogue
    )
    results["forecast"] = forecast_result
    verdicts.append(forecast_result["verdict"])
    return CalibrationResult(results=results, verdict=" ".join(verdicts), forecasts=forecasts)


def _spearman_nan(a: np.ndarray, b: np.ndarray) -> float | None:
    keep = ~np.isnan(a) & ~np.isnan(b)
    return _spearman(a[keep], b[keep])


def _score_sentence(correlation: dict, quarters: int) -> str:
    rho, low, high = correlation.get("rho"), correlation.get("low"), correlation.get("high")
    if rho is None:
        return "The score could not be compared with revenue (too few scored partners)."
    strength = "no" if low is not None and low <= 0 <= (high or 0) else "a weak" if abs(rho) < 0.3 else "a clear"
    return (
        f"Over {quarters} quarter(s), the score at a quarter's start shows {strength} rank correlation with that "
        f"quarter's partner-sourced revenue (rho {rho:+.2f}, interval {low:+.2f} to {high:+.2f})."
    )


def _at_risk_sentence(figures: dict, options: CalibrationOptions) -> str:
    if not figures["fell"]:
        return f"No partner's revenue fell by {options.fall:.0%} or more, so the at-risk band could not be judged."
    precision = "" if figures["precision"] is None else f", {figures['precision']:.0%} of those it flagged did"
    return (
        f"The at-risk band flagged {figures['true_positives']} of the {figures['fell']} partners whose revenue then "
        f"fell by {options.fall:.0%} or more (recall {figures['recall']:.0%}{precision}; "
        f"{figures['base_rate']:.0%} of partners fell)."
    )


def _weights_section(
    spec: ModelSpec,
    labels: dict,
    train: list[Quarter],
    test: list[Quarter],
    *,
    at_risk: float,
    options: CalibrationOptions,
    saturated: np.ndarray,
) -> dict:
    """NNLS weights on the training quarters, judged on the test quarters against the current and uniform ones.

    Saturated components (most partners at full marks or at none) keep their current weight and stay out of
    the fit: their few distinct values would turn a tiny coefficient into a large weight that mostly shifts
    every score, and the fix they need is a better target, not a weight.
    """
    components = np.vstack([q.features.components for q in train])
    revenue_ranks = _pooled_ranks(train, lambda q: q.revenue)
    raw_weights, coefficients = np.zeros(len(spec.components)), np.zeros(len(spec.components))
    fitted = ~saturated
    if fitted.any():
        raw_weights[fitted], coefficients[fitted] = fit_weights(components[:, fitted], revenue_ranks)
    current = np.array([c.weight for c in spec.components])
    total = current.sum()
    section: dict = {
        "train": [q.label for q in train],
        "test": [q.label for q in test],
    }
    if raw_weights.sum() <= 0:
        section.update(
            status="no_signal",
            significant=False,
            rows=[
                {"kpi": c.kpi, "label": labels[c.kpi], "current": c.weight, "suggested": None, "coefficient": 0.0}
                for c in spec.components
            ],
            verdict=(
                "Suggested weights: none. On the earlier quarters no component ranks revenue better than chance, "
                "so the fit is not better than the current weights; keep them."
            ),
        )
        return section
    suggested = np.where(saturated, current, 0.0)
    suggested[fitted] = raw_weights[fitted] / raw_weights.sum() * (total - current[saturated].sum())
    uniform = np.full(len(current), total / len(current))
    test_components = [q.features.components for q in test]
    test_revenue = _pooled_ranks(test, lambda q: q.revenue)
    candidates = {"current": current, "suggested": suggested, "uniform": uniform}
    ranks = {
        name: np.concatenate([within_ranks(blend(c, weights)) for c in test_components])
        for name, weights in candidates.items()
    }
    common = {"resamples": options.resamples, "confidence": options.confidence}
    out_of_sample = {name: rank_correlations(r, test_revenue, **common)[0].as_dict() for name, r in ranks.items()}
    difference = _difference(ranks["suggested"], ranks["current"], test_revenue, **common)
    over_uniform = _difference(ranks["suggested"], ranks["uniform"], test_revenue, **common)
    before = np.concatenate([q.features.revenue_before for q in test])
    revenue = np.concatenate([q.revenue for q in test])
    precision_recall = {}
    for name, weights in candidates.items():
        scores = np.concatenate([blend(c, weights) for c in test_components])
        flagged = ~np.isnan(scores) & (np.nan_to_num(scores, nan=np.inf) < at_risk)
        precision_recall[name] = fall_prediction(flagged, before, revenue, fall=options.fall)
    significant = difference.low is not None and difference.low > 0
    order = np.argsort(-suggested, kind="stable")
    section.update(
        status="fitted",
        significant=significant,
        rows=[
            {
                "kpi": spec.components[i].kpi,
                "label": labels[spec.components[i].kpi],
                "current": float(current[i]),
                "current_share": _round(current[i] / total),
                "suggested": _round(suggested[i], 3),
                "suggested_share": _round(suggested[i] / total),
                "coefficient": _round(coefficients[i]),
                "kept": bool(saturated[i]),
            }
            for i in order
        ],
        out_of_sample=out_of_sample,
        difference=difference.as_dict(),
        difference_uniform=over_uniform.as_dict(),
        precision_recall=precision_recall,
    )
    tested = ", ".join(section["test"])
    current_rho, suggested_rho = out_of_sample["current"]["rho"], out_of_sample["suggested"]["rho"]
    if significant:
        section["verdict"] = (
            f"Suggested weights, fitted on {', '.join(section['train'])} and tested on {tested}, rank next-quarter "
            f"revenue significantly better than the current ones (rho {suggested_rho:+.2f} against "
            f"{current_rho:+.2f}; the difference's interval is {difference.low:+.2f} to {difference.high:+.2f})."
        )
    else:
        section["verdict"] = (
            f"The fit is not significantly better than the current weights out of sample (tested on {tested}: "
            f"rho {_signed(suggested_rho)} against {_signed(current_rho)}; the difference's interval "
            f"{_signed(difference.low)} to {_signed(difference.high)} includes zero or less). Keep the current weights."
        )
    return section


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _forecast_section(
    model: ScoringModel,
    spec: ModelSpec,
    quarters: list[Quarter],
    train: list[Quarter],
    test: list[Quarter],
    *,
    as_of: datetime.datetime,
    options: CalibrationOptions,
    catalogue: dict,
) -> tuple[dict, list]:
    holdout_fit = forecast_fit(train)
    predicted_root = np.concatenate([holdout_fit.predict_root(q.features) for q in test])
    actual = np.concatenate([q.revenue for q in test])
    naive = np.concatenate([q.features.revenue_before for q in test])
    intervals = Intervals.fit(predicted_root, actual, interval=options.interval)
    predicted = np.square(predicted_root)
    low, high = intervals.bounds(predicted_root)
    covered = (actual >= low) & (actual <= high)
    holdout = {
        "quarters": [q.label for q in test],
        "partners": int(len(actual)),
        "mape": _mape(predicted, actual),
        "wape": _wape(predicted, actual),
        "spearman": _spearman(predicted, actual),
        "coverage": _round(covered.mean()),
        "naive_mape": _mape(naive, actual),
        "naive_wape": _wape(naive, actual),
        "naive_spearman": _spearman(naive, actual),
    }
    fit = forecast_fit(quarters)
    end = _local_shift(as_of, 3)
    partners = population_at(model, as_of).exclude(status=Partner.Status.EXITED)
    now = features_at(spec, as_of=as_of, partners=partners, catalogue=catalogue)
    now_root = fit.predict_root(now)
    now_low, now_high = intervals.bounds(now_root)
    rows = [
        (int(pid), float(value * value), float(lower), float(upper), float(revenue_before))
        for pid, value, lower, upper, revenue_before in zip(
            now.partner_ids, now_root, now_low, now_high, now.revenue_before, strict=True
        )
    ]
    names = ["intercept", "sqrt revenue, previous three months", "sqrt open pipeline"] + [
        c.kpi for c in spec.components
    ]
    mape = holdout["mape"]
    verdict = (
        f"Forecast of the next three months' revenue per partner: on the held-out {', '.join(holdout['quarters'])} "
        f"its rank correlation with actual revenue was {_signed(holdout['spearman'])}"
        + (f" and its MAPE {mape:.0%}" if mape is not None else "")
        + f" (last quarter's revenue as the forecast: {_signed(holdout['naive_spearman'])}"
        + (f", MAPE {holdout['naive_mape']:.0%}" if holdout["naive_mape"] is not None else "")
        + f"). Its {options.interval:.0%} intervals come from the misses of partners with similar predictions "
        "on the held-out quarters."
    )
    return (
        {
            "status": "fitted",
            "start": as_of.isoformat(),
            "end": end.isoformat(),
            "interval": options.interval,
            "holdout": holdout,
            "partners": len(rows),
            "coefficients": {name: _round(value) for name, value in zip(names, fit.coefficients, strict=True)},
            "verdict": verdict,
        },
        rows,
    )


@transaction.atomic
def calibration_report_create(
    *,
    model: ScoringModel,
    as_of: datetime.datetime | None = None,
    options: CalibrationOptions | None = None,
    user=None,
    trigger: str = "command",
    progress: Progress | None = None,
) -> CalibrationReport:
    """Compute a calibration report of one model and store it with its per-partner forecasts."""
    as_of = as_of or timezone.now()
    options = options or CalibrationOptions()
    computed = calibration_compute(model=model, as_of=as_of, options=options, progress=progress)
    report = CalibrationReport.objects.create(
        model=model,
        as_of=as_of,
        created_by=user if user is not None and user.is_authenticated else None,
        trigger=trigger,
        quarters=options.quarters,
        parameters=options.as_dict(),
        results=computed.results,
        verdict=computed.verdict,
    )
    PartnerForecast.objects.bulk_create(
        (
            PartnerForecast(
                report=report,
                partner_id=pid,
                model=model,
                predicted=predicted,
                low=low,
                high=high,
                revenue_last_quarter=revenue_before,
            )
            for pid, predicted, low, high, revenue_before in computed.forecasts
        ),
        batch_size=5000,
    )
    return report


def calibration_reports_create(
    *,
    model: ScoringModel | None = None,
    options: CalibrationOptions | None = None,
    user=None,
    trigger: str,
    as_of: datetime.datetime | None = None,
    progress: Progress | None = None,
) -> list[CalibrationReport]:
    """One report per active model (or for the given one), all as of the same instant.

    Runs one at a time (a row lock): a monthly run and a "Regenerate now" never compute side by side on the
    same workers; the second waits, then makes its own report.
    """
    as_of = as_of or timezone.now()
    RecomputeLock.objects.get_or_create(name=LOCK_NAME)
    with transaction.atomic():
        RecomputeLock.objects.select_for_update().get(name=LOCK_NAME)
        models = [model] if model is not None else list(ScoringModel.objects.filter(is_active=True))
        return [
            calibration_report_create(
                model=m, as_of=as_of, options=options, user=user, trigger=trigger, progress=progress
            )
            for m in models
        ]


# Reads for the pages and the API ---------------------------------------------------------------------

REPORT_HISTORY = 50


def calibration_reports(model: ScoringModel, *, limit: int = REPORT_HISTORY) -> list[CalibrationReport]:
    """A model's reports, newest first, without their (large) results: one query."""
    return list(
        CalibrationReport.objects.filter(model=model)
        .select_related("created_by")
        .defer("results")
        .order_by("-created_at", "-id")[:limit]
    )


def latest_forecast(partner: Partner, model_id: int | None) -> PartnerForecast | None:
    """The partner's forecast from the newest report of the model that has one for it (one index read)."""
    if model_id is None:
        return None
    return (
        PartnerForecast.objects.filter(partner=partner, model_id=model_id)
        .select_related("report")
        .defer("report__results")
        .order_by("-report_id")
        .first()
    )


def forecast_period(forecast: PartnerForecast) -> tuple[datetime.datetime, datetime.datetime]:
    """The three months a forecast is for: from its report's instant."""
    return forecast.report.as_of, _local_shift(forecast.report.as_of, 3)
