"""The scoring math of SCORING.md, pure and database-free: raw KPI values in, scores and bands out."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat

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
        if not isinstance(row, dict)
        else row
        for row in stored
    ]


@dataclass
class PartnerScore:
    score: float | None
    band: str
    category_scores: dict[str, float | None]
    # One row (a tuple) per component, in COMPONENT_COLUMNS order: 100,000 partners x 14 components are
    # written as they are, and expanded into dicts only where read.
    rows: list[tuple] = field(default_factory=list)

    @property
    def components(self) -> list[dict]:
        """{kpi, category, raw, normalized, weight, contribution, included} per component."""
        return components_expand(self.rows)


def clamp(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


# Each normalization is written once, over a column of raw values (every partner of a model at once: a
# list comprehension costs a fraction of a call per value); `missing` is what a None becomes.


def target_column(values: Iterable[float | None], target: float, direction: str, missing=None) -> list:
    if direction == "lower":
        return [missing if raw is None else 100.0 if raw <= target else 100.0 * target / raw for raw in values]
    return [
        missing if raw is None else 100.0 * (0.0 if (x := raw / target) < 0 else 1.0 if x > 1 else x) for raw in values
    ]


def range_column(values: Iterable[float | None], lower: float, upper: float, direction: str, missing=None) -> list:
    span = upper - lower
    if direction == "lower":
        return [
            missing if raw is None else 100.0 * (0.0 if (x := (upper - raw) / span) < 0 else 1.0 if x > 1 else x)
            for raw in values
        ]
    return [
        missing if raw is None else 100.0 * (0.0 if (x := (raw - lower) / span) < 0 else 1.0 if x > 1 else x)
        for raw in values
    ]


def normalize_target(raw: float, target: float, direction: str) -> float:
    return target_column([raw], target, direction)[0]


def normalize_range(raw: float, lower: float, upper: float, direction: str) -> float:
    return range_column([raw], lower, upper, direction)[0]


class Percentiles:
    """Percentile of a raw value among the peers' non-null values (ties count neither above nor below)."""

    def __init__(self, values: Iterable[float | None]):
        self.sorted = sorted(v for v in values if v is not None)

    def column(self, values: Iterable[float | None], direction: str, missing=None) -> list:
        ranked, n = self.sorted, len(self.sorted)
        if n <= 1:
            return [missing if raw is None else 50.0 for raw in values]
        if direction == "lower":  # the share of peers strictly worse (higher)
            return [missing if raw is None else 100.0 * (n - bisect_right(ranked, raw)) / (n - 1) for raw in values]
        return [missing if raw is None else 100.0 * bisect_left(ranked, raw) / (n - 1) for raw in values]

    def normalize(self, raw: float, direction: str) -> float:
        return self.column([raw], direction)[0]


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
    """score_population one partner at a time, as (partner id, score)."""
    return iter(ScoredPopulation(spec, raw, partner_ids, peers))


def _rows_of(columns: list[list], count: int) -> Iterator[tuple]:
    """The rows of `count` values each of `columns` (a model with no component still has partners)."""
    return zip(*columns, strict=True) if columns else repeat((), count)


class ScoredPopulation:
    """A model's population scored a component at a time: every partner's score and band as columns, and
    each partner's full score (explanation included) assembled as it is iterated, (partner id, score).

    The arithmetic runs over the whole population at once (percentiles need it anyway), in the order one
    partner at a time would take, so every sum is the same float; a recompute can store the scores and
    bands while it assembles the explanations.
    """

    def __init__(
        self,
        spec: ModelSpec,
        raw: Mapping[str, Mapping[int, float | None]],
        partner_ids: Iterable[int],
        peers: Mapping[str, Iterable[float | None]] | None = None,
    ):
        self.partner_ids = partner_ids = list(partner_ids)
        count = len(partner_ids)
        missing_scores = {"zero": 0.0, "neutral": 50.0}
        components = spec.components
        self.categories = categories = list(dict.fromkeys(c.category for c in components))
        self._raw_columns, self._normalized_columns = [], []
        for c in components:
            values = raw.get(c.kpi, {})
            column = [values.get(pid) for pid in partner_ids]
            missing = missing_scores.get(c.missing)
            if c.method == "target":
                normalized = target_column(column, c.target, c.direction, missing)
            elif c.method == "range":
                normalized = range_column(column, c.lower, c.upper, c.direction, missing)
            else:
                ranked = Percentiles((peers or {}).get(c.kpi, values.values()))
                normalized = ranked.column(column, c.direction, missing)
            self._raw_columns.append(column)
            self._normalized_columns.append(normalized)

        def accumulate(weighted_columns) -> tuple[list[float], list[float]]:
            """Per partner: the weights of the included components, and their weighted normalized sum."""
            weights, sums = [0.0] * count, [0.0] * count
            for weight, normalized in weighted_columns:
                weights = [w if x is None else w + weight for w, x in zip(weights, normalized, strict=True)]
                sums = [s if x is None else s + weight * x for s, x in zip(sums, normalized, strict=True)]
            return weights, sums

        self._weights = weights = [c.weight for c in components]
        included, total = accumulate(zip(weights, self._normalized_columns, strict=True))
        self.scores = [s / w if w else None for w, s in zip(included, total, strict=True)]
        self.bands = [spec.band_for(score) for score in self.scores]
        self._category_columns = []
        for category in categories:
            in_category = [
                (c.weight, self._normalized_columns[i]) for i, c in enumerate(components) if c.category == category
            ]
            self._category_columns.append([s / w if w else None for w, s in zip(*accumulate(in_category), strict=True)])
        self._contribution_columns = [
            [0.0 if x is None else weight * x / w for x, w in zip(normalized, included, strict=True)]
            for weight, normalized in zip(weights, self._normalized_columns, strict=True)
        ]
        self._kpis = [c.kpi for c in components]
        self._component_categories = [c.category for c in components]

    def __len__(self) -> int:
        return len(self.partner_ids)

    def __iter__(self) -> Iterator[tuple[int, PartnerScore]]:
        categories, kpis, component_categories, weights = (
            self.categories,
            self._kpis,
            self._component_categories,
            self._weights,
        )
        for partner_id, score, band, category_values, raws, normalized, contributions in zip(
            self.partner_ids,
            self.scores,
            self.bands,
            _rows_of(self._category_columns, len(self)),
            _rows_of(self._raw_columns, len(self)),
            _rows_of(self._normalized_columns, len(self)),
            _rows_of(self._contribution_columns, len(self)),
            strict=True,
        ):
            yield (
                partner_id,
                PartnerScore(
                    score=score,
                    band=band,
                    category_scores=dict(zip(categories, category_values, strict=True)),
                    rows=list(zip(kpis, component_categories, raws, normalized, weights, contributions, strict=True)),
                ),
            )
