"""The scoring math of SCORING.md, checked by hand-computed numbers."""

import pytest

from health.scoring import ComponentSpec, ModelSpec, Percentiles, normalize_range, normalize_target, score_population


def spec(*components, healthy=70.0, at_risk=40.0) -> ModelSpec:
    return ModelSpec(
        id=None,
        name="t",
        window_days=90,
        trend_days=30,
        healthy_threshold=healthy,
        at_risk_threshold=at_risk,
        components=tuple(components),
    )


def comp(kpi="k", weight=1.0, method="target", direction="higher", missing="exclude", category="engagement", **kw):
    return ComponentSpec(
        kpi=kpi, category=category, weight=weight, method=method, direction=direction, missing=missing, **kw
    )


@pytest.mark.parametrize(
    "raw,target,direction,expected",
    [
        (5, 10, "higher", 50.0),
        (20, 10, "higher", 100.0),  # clamped
        (-3, 10, "higher", 0.0),  # clamped
        (5, 10, "lower", 100.0),  # at or under target is perfect
        (10, 10, "lower", 100.0),
        (20, 10, "lower", 50.0),  # 100 * t / r
    ],
)
def test_target(raw, target, direction, expected):
    assert normalize_target(raw, target, direction) == pytest.approx(expected)


@pytest.mark.parametrize(
    "raw,direction,expected",
    [(0.3, "higher", 50.0), (0.1, "higher", 0.0), (0.9, "higher", 100.0), (0.2, "lower", 75.0), (0.6, "lower", 0.0)],
)
def test_range(raw, direction, expected):
    assert normalize_range(raw, 0.1, 0.5, direction) == pytest.approx(expected)


def test_percentile_ties_and_direction():
    peers = Percentiles([1, 2, 2, 3, None])  # n = 4 non-null
    assert peers.normalize(1, "higher") == 0.0
    # Both 2s: one peer strictly below -> 100 * 1 / 3, ties do not lift each other.
    assert peers.normalize(2, "higher") == pytest.approx(100 / 3)
    assert peers.normalize(3, "higher") == 100.0
    # Lower is better: peers strictly above.
    assert peers.normalize(1, "lower") == 100.0
    assert peers.normalize(2, "lower") == pytest.approx(100 / 3)
    assert peers.normalize(3, "lower") == 0.0


def test_percentile_single_peer_is_50():
    assert Percentiles([7]).normalize(7, "higher") == 50.0


def test_missing_policies_and_renormalization():
    model = spec(
        comp("a", weight=3, target=10),
        comp("b", weight=1, target=10, missing="exclude"),
        comp("c", weight=1, target=10, missing="zero"),
        comp("d", weight=1, target=10, missing="neutral"),
    )
    raw = {"a": {1: 10.0}, "b": {1: None}, "c": {1: None}, "d": {1: None}}
    result = score_population(model, raw, [1])[1]
    # b drops out: (3*100 + 1*0 + 1*50) / 5
    assert result.score == pytest.approx(70.0)
    by_kpi = {c["kpi"]: c for c in result.components}
    assert by_kpi["b"]["included"] is False and by_kpi["b"]["normalized"] is None
    assert by_kpi["c"]["normalized"] == 0.0 and by_kpi["d"]["normalized"] == 50.0
    assert sum(c["contribution"] for c in result.components) == pytest.approx(result.score)
    assert by_kpi["a"]["contribution"] == pytest.approx(60.0)
    assert result.band == "healthy"


def test_nothing_included_is_no_data():
    result = score_population(spec(comp("a", target=1)), {"a": {1: None}}, [1])[1]
    assert result.score is None and result.band == "no_data"


@pytest.mark.parametrize("score,band", [(70.0, "healthy"), (69.99, "watch"), (40.0, "watch"), (39.99, "at_risk")])
def test_bands_at_thresholds(score, band):
    assert spec().band_for(score) == band


def test_category_sub_scores():
    model = spec(
        comp("a", weight=1, target=10, category="engagement"),
        comp("b", weight=3, target=10, category="pipeline"),
        comp("c", weight=1, target=10, category="pipeline"),
    )
    result = score_population(model, {"a": {1: 5.0}, "b": {1: 10.0}, "c": {1: 0.0}}, [1])[1]
    assert result.category_scores == {"engagement": pytest.approx(50.0), "pipeline": pytest.approx(75.0)}
    assert result.score == pytest.approx((50 + 300 + 0) / 5)


def test_percentile_peers_default_to_population_and_can_be_given():
    model = spec(comp("a", method="percentile"))
    raw = {"a": {1: 1.0, 2: 2.0, 3: 3.0}}
    scores = score_population(model, raw, [1, 2, 3])
    assert [scores[i].score for i in (1, 2, 3)] == [0.0, 50.0, 100.0]
    # A partial run ranks partner 2 among the whole population given as peers.
    alone = score_population(model, {"a": {2: 2.0}}, [2], peers={"a": [1.0, 2.0, 3.0, 4.0, 5.0]})
    assert alone[2].score == pytest.approx(25.0)


def _reference(model: ModelSpec, raw: dict, partner_ids: list[int]) -> dict:
    """SCORING.md one partner at a time, written independently of health.scoring's column-wise code."""

    def normalized(c: ComponentSpec, value: float | None, peers: list[float]) -> float | None:
        if value is None:
            return {"zero": 0.0, "neutral": 50.0}.get(c.missing)
        if c.method == "target":
            if c.direction == "lower":
                return 100.0 if value <= c.target else 100.0 * c.target / value
            return 100.0 * min(1.0, max(0.0, value / c.target))
        if c.method == "range":
            share = (c.upper - value if c.direction == "lower" else value - c.lower) / (c.upper - c.lower)
            return 100.0 * min(1.0, max(0.0, share))
        if len(peers) <= 1:
            return 50.0
        worse = sum(p > value for p in peers) if c.direction == "lower" else sum(p < value for p in peers)
        return 100.0 * worse / (len(peers) - 1)

    result = {}
    for pid in partner_ids:
        rows = []
        for c in model.components:
            peers = [raw[c.kpi][p] for p in partner_ids if raw[c.kpi].get(p) is not None]
            rows.append((c, raw[c.kpi].get(pid), normalized(c, raw[c.kpi].get(pid), peers)))
        included = sum(c.weight for c, _, n in rows if n is not None)
        score = sum(c.weight * n for c, _, n in rows if n is not None) / included if included else None
        categories = {}
        for category in dict.fromkeys(c.category for c in model.components):
            mine = [(c.weight, n) for c, _, n in rows if c.category == category and n is not None]
            weight = sum(w for w, _ in mine)
            categories[category] = sum(w * n for w, n in mine) / weight if weight else None
        contributions = [c.weight * n / included if n is not None else 0.0 for c, _, n in rows]
        result[pid] = (score, model.band_for(score), categories, [(v, n) for _, v, n in rows], contributions)
    return result


@pytest.mark.parametrize("seed", range(8))
def test_population_scoring_matches_one_partner_at_a_time(seed):
    """Every method, direction and missing policy, with ties and missing values, over a population: the
    column-wise scoring gives what scoring each partner on its own by SCORING.md gives."""
    import random

    rng = random.Random(seed)
    methods = [
        {"method": "target", "target": 10.0},
        {"method": "range", "lower": 2.0, "upper": 8.0},
        {"method": "percentile"},
    ]
    components = [
        comp(
            f"k{i}",
            weight=rng.choice([1.0, 2.5, 7.0]),
            direction=rng.choice(["higher", "lower"]),
            missing=rng.choice(["exclude", "zero", "neutral"]),
            category=rng.choice(["pipeline", "enablement", "engagement"]),
            **rng.choice(methods),
        )
        for i in range(rng.randint(1, 7))
    ]
    model = spec(*components)
    partner_ids = list(range(1, rng.randint(2, 60)))
    raw = {
        c.kpi: {
            pid: rng.choice([None, 0.0, 3.0, 5.0, rng.uniform(-2, 20)]) for pid in partner_ids if rng.random() < 0.9
        }
        for c in components
    }
    expected = _reference(model, raw, partner_ids)
    scored = score_population(model, raw, partner_ids)
    assert list(scored) == partner_ids
    for pid in partner_ids:
        score, band, categories, values, contributions = expected[pid]
        got = scored[pid]
        assert (got.score is None) == (score is None) and got.band == band
        if score is not None:
            assert got.score == pytest.approx(score)
        assert got.category_scores.keys() == categories.keys()
        for key, value in categories.items():
            assert (got.category_scores[key] is None) == (value is None)
            if value is not None:
                assert got.category_scores[key] == pytest.approx(value)
        rows = got.components
        assert [c["kpi"] for c in rows] == [c.kpi for c in components]
        assert [(c["raw"], c["normalized"]) for c in rows] == [
            (v, pytest.approx(n) if n is not None else None) for v, n in values
        ]
        assert [c["contribution"] for c in rows] == pytest.approx(contributions)
        assert [c["included"] for c in rows] == [n is not None for _, n in values]
        if score is not None:
            assert sum(c["contribution"] for c in rows) == pytest.approx(score)
