"""The scoring math of SCORING.md, pure and database-free: raw KPI values in, scores and bands out."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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


@dataclass
class PartnerScore:
    score: float | None
    band: str
    category_scores: dict[str, float | None]
    components: list[dict] = field(default_factory=list)


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
    partner_ids = list(partner_ids)
    percentiles = {
        c.kpi: Percentiles((peers or {}).get(c.kpi, raw.get(c.kpi, {}).values()))
        for c in spec.components
        if c.method == "percentile"
    }
    results: dict[int, PartnerScore] = {}
    for partner_id in partner_ids:
        rows = []
        for component in spec.components:
            value = raw.get(component.kpi, {}).get(partner_id)
            if value is None:
                normalized = {"zero": 0.0, "neutral": 50.0}.get(component.missing)
            elif component.method == "target":
                normalized = normalize_target(value, component.target, component.direction)
            elif component.method == "range":
                normalized = normalize_range(value, component.lower, component.upper, component.direction)
            else:
                normalized = percentiles[component.kpi].normalize(value, component.direction)
            rows.append((component, value, normalized))

        included_weight = sum(c.weight for c, _, s in rows if s is not None)
        score = weighted((c.weight, s) for c, _, s in rows if s is not None)
        categories: dict[str, list[tuple[float, float]]] = {}
        for component, _, normalized in rows:
            pairs = categories.setdefault(component.category, [])
            if normalized is not None:
                pairs.append((component.weight, normalized))
        results[partner_id] = PartnerScore(
            score=score,
            band=spec.band_for(score),
            category_scores={category: weighted(pairs) for category, pairs in categories.items()},
            components=[
                {
                    "kpi": component.kpi,
                    "category": component.category,
                    "raw": value,
                    "normalized": normalized,
                    "weight": component.weight,
                    "contribution": component.weight * normalized / included_weight if normalized is not None else 0.0,
                    "included": normalized is not None,
                }
                for component, value, normalized in rows
            ],
        )
    return results
