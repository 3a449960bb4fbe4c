"""The scoring math of SCORING.md, pure and database-free: raw KPI values in, scores and bands out."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial

NO_DATA, HEALTHY, WATCH, AT_RISK = "no_data", "healthy", "watch", "at_risk"


@dataclass(frozen=True)
class ComponentSpec:
    kpi: str
    category: str
    weight: float
    method: str  # target | range | percentile
    direction: str  # higher | lower (already resolved from the KPI's default)
    missing: str = "exclude"  # exclude | zero | neutral
    target: float | None = None
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A scoring model as plain values, saved or not (the what-if preview scores unsaved ones)."""

    id: int | None
    name: str
    window_days: int
    trend_days: int
    healthy_threshold: float
    at_risk_threshold: float
    components: tuple[ComponentSpec, ...]
    alert_threshold: float = 40.0
    rearm_points: float = 5.0
    drop_points: float = 15.0

    def band_for(self, score: float | None) -> str:
        if score is None:
            return NO_DATA
        if score >= self.healthy_threshold:
            return HEALTHY
        if score < self.at_risk_threshold:
            return AT_RISK
        return WATCH


# The order of a component row (as scored and as stored); "included" is not in it: it is exactly "normalized is not null".
COMPONENT_COLUMNS = ("kpi", "category", "raw", "normalized", "weight", "contribution")
NORMALIZED = COMPONENT_COLUMNS.index("normalized")


def components_compact(components: list) -> list:
    """A snapshot's component dicts as the rows stored: [kpi, category, raw, normalized, weight, contribution]."""
    return [
        [c["kpi"], c["category"], c["raw"], c["normalized"], c["weight"], c["contribution"]]
        if isinstance(c, dict)
        else c
        for c in components
    ]


def components_expand(stored: list) -> list[dict]:
    """Stored component rows back as {kpi, category, raw, normalized, weight, contribution, included} dicts.

    Rows written before the compact form (dicts) are returned as they are.
    """
    return [
        {
            "kpi": row[0],
            "category": row[1],
            "raw": row[2],
            "normalized": row[3],
            "weight": row[4],
            "contribution": row[5],
            "included": row[3] is not None,
        }
        if isinstance(row, list)
        else row
        for row in stored
    ]


@dataclass
class PartnerScore:
    score: float | None
    band: str
    category_scores: dict[str, float | None]
    # One row per component, in COMPONENT_COLUMNS order: 100,000 partners x 14 components are written as
    # they are, and expanded into dicts only where read.
    rows: list[list] = field(default_factory=list)

    @property
    def components(self) -> list[dict]:
        """{kpi, category, raw, normalized, weight, contribution, included} per component."""
        return components_expand(self.rows)


def clamp(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def normalize_target(raw: float, target: float, direction: str) -> float:
    if direction == "lower":
        return 100.0 if raw <= target else 100.0 * target / raw
    return 100.0 * clamp(raw / target)


def normalize_range(raw: float, lower: float, upper: float, direction: str) -> float:
    if direction == "lower":
        return 100.0 * clamp((upper - raw) / (upper - lower))
    return 100.0 * clamp((raw - lower) / (upper - lower))


class Percentiles:
    """Percentile of a raw value among the peers' non-null values (ties count neither above nor below)."""

    def __init__(self, values: Iterable[float | None]):
        self.sorted = sorted(v for v in values if v is not None)

    def normalize(self, raw: float, direction: str) -> float:
        n = len(self.sorted)
        if n <= 1:
            return 50.0
        if direction == "lower":
            worse_or_equal = bisect_right(self.sorted, raw)
            return 100.0 * (n - worse_or_equal) / (n - 1)
        return 100.0 * bisect_left(self.sorted, raw) / (n - 1)


def weighted(pairs: Iterable[tuple[float, float]]) -> float | None:
    """sum(w * s) / sum(w), or None when there is nothing to weigh."""
    total_weight = total = 0.0
    for weight, score in pairs:
        total_weight += weight
        total += weight * score
    return total / total_weight if total_weight else None


def score_population(
    spec: ModelSpec,
    raw: Mapping[str, Mapping[int, float | None]],
    partner_ids: Iterable[int],
    peers: Mapping[str, Iterable[float | None]] | None = None,
) -> dict[int, PartnerScore]:
    """Score every partner of a model's population from the raw KPI values.

    `raw[kpi][partner_id]` holds each partner's raw value. Percentile components rank a partner among
    `peers[kpi]` (every partner scored by the model at the same instant); by default the scored partners
    themselves are the peers.
    """
    return dict(score_partners(spec, raw, partner_ids, peers))


def score_partners(
    spec: ModelSpec,
    raw: Mapping[str, Mapping[int, float | None]],
    partner_ids: Iterable[int],
    peers: Mapping[str, Iterable[float | None]] | None = None,
) -> Iterator[tuple[int, PartnerScore]]:
    """score_population one partner at a time, as (partner id, score): a recompute writes each score while
    the database stores the previous ones. Percentiles are ranked among the whole population first."""
    partner_ids = list(partner_ids)
    percentiles = {
        c.kpi: Percentiles((peers or {}).get(c.kpi, raw.get(c.kpi, {}).values()))
        for c in spec.components
        if c.method == "percentile"
    }
    missing_scores = {"zero": 0.0, "neutral": 50.0}
    # Everything that does not depend on the partner, resolved once per component.
    plan = []
    for c in spec.components:
        if c.method == "target":
            normalize = partial(normalize_target, target=c.target, direction=c.direction)
        elif c.method == "range":
            normalize = partial(normalize_range, lower=c.lower, upper=c.upper, direction=c.direction)
        else:
            normalize = partial(percentiles[c.kpi].normalize, direction=c.direction)
        plan.append((c.kpi, c.category, c.weight, raw.get(c.kpi, {}), normalize, missing_scores.get(c.missing)))
    categories = list(dict.fromkeys(c.category for c in spec.components))
    band_for = spec.band_for

    for partner_id in partner_ids:
        rows = []
        included_weight = weighted_sum = 0.0
        category_weight = dict.fromkeys(categories, 0.0)
        category_sum = dict.fromkeys(categories, 0.0)
        for kpi, category, weight, values, normalize, if_missing in plan:
            value = values.get(partner_id)
            normalized = if_missing if value is None else normalize(value)
            rows.append((kpi, category, weight, value, normalized))
            if normalized is not None:
                included_weight += weight
                weighted_sum += weight * normalized
                category_weight[category] += weight
                category_sum[category] += weight * normalized
        score = weighted_sum / included_weight if included_weight else None
        yield (
            partner_id,
            PartnerScore(
                score=score,
                band=band_for(score),
                category_scores={
                    category: category_sum[category] / category_weight[category] if category_weight[category] else None
                    for category in categories
                },
                rows=[
                    [
                        kpi,
                        category,
                        value,
                        normalized,
                        weight,
                        weight * normalized / included_weight if normalized is not None else 0.0,
                    ]
                    for kpi, category, weight, value, normalized in rows
                ],
            ),
        )
