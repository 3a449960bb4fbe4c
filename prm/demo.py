"""A believable demo partner program with a year of history, generated deterministically from a seed.

Everything is drawn from `random.Random` streams seeded by (seed, partner number), so the same seed
gives the same program; only the end of history moves with the calendar (today, midnight). Daily
events are aggregated (a week's logins are one activity with a quantity) so that 200 partners take
seconds, and all writes go through prm.services in a few batches.

The program has a shape worth scoring: engagement drifts slowly within each partner, a few partners
fade over the last months and a few recover, and deal registrations follow engagement a month later
with engagement-dependent win rates, so revenue in a quarter follows engagement in the quarter before
(the first calibration report, made by seed_demo, measures it).
"""

from __future__ import annotations

import datetime
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from prm.models import (
    Activity,
    ActivityKind,
    Certification,
    Contact,
    Deal,
    Partner,
    PartnerMembership,
    Tier,
)
from prm.roles import ACCOUNT_MANAGER, PARTNER_USER
from prm.services import activities_ingest, certifications_upsert, deals_upsert, partners_upsert

DEMO_SOURCE = "demo"
WEEKS = 52
# Activities are written per group of partners: each call stays under the API's list limit and
# announces each partner once.
ACTIVITY_BATCH = 5000

# slug, name, rank, min sales / technical / delivery certifications, min quarterly revenue, min health score
TIERS = [
    ("registered", "Registered", 0, 0, 0, 0, None, None),
    ("silver", "Silver", 1, 1, 1, 0, Decimal("25000"), Decimal("40")),
    ("gold", "Gold", 2, 2, 2, 1, Decimal("100000"), Decimal("55")),
    ("platinum", "Platinum", 3, 3, 3, 2, Decimal("350000"), Decimal("70")),
]
TIER_SHARE = [0.40, 0.30, 0.20, 0.10]
# Per tier rank: baseline engagement, deal registrations a week at baseline, mean deal size,
# quarterly revenue target, MDF a quarter, rebate rate, contacts (min, max).
ENGAGEMENT = [0.5, 0.8, 1.1, 1.4]
DEALS_PER_WEEK = [0.30, 0.45, 0.60, 0.80]
DEAL_SIZE = [6000, 20000, 45000, 90000]
REVENUE_TARGET = [10000, 50000, 200000, 650000]
MDF = [0, 5000, 15000, 40000]
REBATE_RATE = [0.01, 0.02, 0.03, 0.04]
CONTACTS = [(3, 4), (4, 6), (6, 9), (8, 12)]

TYPES = ["reseller", "msp", "referral", "alliance", "distributor"]
TYPE_SHARE = [0.40, 0.20, 0.15, 0.15, 0.10]
REGIONS = ["NA", "EMEA", "APAC", "LATAM"]
REGION_SHARE = [0.40, 0.35, 0.15, 0.10]

# Each account manager covers one region.
MANAGERS = [
    ("olivia.martin", "Olivia", "Martin", "NA"),
    ("james.okafor", "James", "Okafor", "NA"),
    ("sofia.rossi", "Sofia", "Rossi", "EMEA"),
    ("lukas.schmidt", "Lukas", "Schmidt", "EMEA"),
    ("mei.tanaka", "Mei", "Tanaka", "APAC"),
    ("diego.alvarez", "Diego", "Alvarez", "LATAM"),
]

NAME_STEMS = [
    "Northwind", "Bluepeak", "Ironbridge", "Silverline", "Crescent", "Summit", "Harbor", "Redwood",
    "Granite", "Apex", "Cobalt", "Meridian", "Pinnacle", "Lakeside", "Brightpath", "Evergreen",
    "Keystone", "Horizon", "Vantage", "Clearwater", "Stonegate", "Highland", "Riverbend", "Atlas",
    "Beacon", "Cascade", "Orion", "Sterling", "Trident", "Westgate", "Fairview", "Oakridge", "Polaris",
    "Quantum", "Sapphire", "Tidewater", "Unity", "Vertex", "Wavecrest", "Zenith", "Alder", "Bristlecone",
    "Copperleaf", "Driftwood", "Elmstead", "Foxglove", "Goldcrest", "Hawthorn", "Indigo", "Juniper",
]  # fmt: skip
TYPE_SUFFIXES = {
    "reseller": ["Systems", "Technologies", "IT Solutions", "Networks"],
    "msp": ["Managed Services", "Cloud Services", "IT Services", "Cloudworks"],
    "referral": ["Consulting", "Advisors", "Partners", "Associates"],
    "alliance": ["Group", "Global", "Digital", "Labs"],
    "distributor": ["Distribution", "Supply", "Trading", "Wholesale"],
}
REGION_SUFFIXES = {
    "NA": ["Inc.", "LLC", "Corp."],
    "EMEA": ["Ltd", "GmbH", "B.V.", "SAS"],
    "APAC": ["Pty Ltd", "Pte Ltd", "K.K."],
    "LATAM": ["S.A.", "Ltda.", "S.A. de C.V."],
}
FIRST_NAMES = [
    "Emma", "Liam", "Ava", "Noah", "Mia", "Lucas", "Amara", "Mateo", "Hana", "Arjun", "Chloe", "Ethan",
    "Fatima", "Jonas", "Grace", "Kenji", "Isabel", "Omar", "Priya", "Samuel", "Lea", "Tomas", "Yuki",
    "Zara", "Daniel", "Elena", "Felix", "Nadia", "Oscar", "Ruth", "Victor", "Wen",
]  # fmt: skip
LAST_NAMES = [
    "Smith", "Garcia", "Muller", "Rossi", "Kim", "Nguyen", "Silva", "Dubois", "Kowalski", "Haddad",
    "Johansson", "Patel", "Sato", "Brown", "Costa", "Novak", "Fischer", "Moreau", "Chen", "Ibrahim",
    "Lopez", "Walsh", "Bauer", "Reyes", "Okoro", "Larsen", "Wright", "Yamamoto",
]  # fmt: skip
CONTACT_ROLES = [
    "Partner manager",
    "Sales representative",
    "Sales engineer",
    "Delivery consultant",
    "Marketing manager",
]
CERTIFICATIONS = {
    "sales": ["Certified Sales Professional", "Solution Selling Specialist"],
    "technical": ["Certified Solutions Architect", "Certified Technical Specialist"],
    "delivery": ["Certified Implementation Engineer", "Certified Support Professional"],
}
CERTIFICATION_VALID_DAYS = 730
DEAL_PRODUCTS = ["Cloud Backup", "Endpoint Security", "Data Platform", "Network Monitoring", "Identity Suite"]
DEAL_KINDS = ["new logo", "expansion", "renewal", "migration", "pilot"]
CUSTOMER_WORDS = [
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent", "Tyrell",
    "Cyberdyne", "Wonka", "Gringotts", "Oscorp", "Aperture", "Massive", "Pied Piper", "Dunder",
]  # fmt: skip
CUSTOMER_SUFFIXES = ["Foods", "Health", "Logistics", "Bank", "Retail", "Energy", "Insurance", "Media", "Motors"]
EVENTS = ["Partner Summit", "Product Roadshow", "Tech Webinar", "Regional Partner Day", "Solution Workshop"]
CAMPAIGNS = ["Cloud Migration", "Secure Hybrid Work", "Data Modernization", "SMB Growth", "Renewal Drive"]
COURSES = ["Product Fundamentals", "Selling the Platform", "Deployment Essentials", "Advanced Troubleshooting"]
MEETING_TOPICS = ["Quarterly business review", "Pipeline review", "Enablement planning", "Joint marketing plan"]


class DemoError(Exception):
    """The demo cannot be seeded here (e.g. the database already holds a partner program)."""


@dataclass
class DemoSummary:
    """What demo_program_create wrote."""

    partners: int = 0
    contacts: int = 0
    managers: list[str] = field(default_factory=list)
    partner_users: list[str] = field(default_factory=list)
    activities: int = 0
    deals: int = 0
    certifications: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)
    declining: list[str] = field(default_factory=list)
    recovering: list[str] = field(default_factory=list)
    history_start: datetime.datetime | None = None
    history_end: datetime.datetime | None = None

    def as_lines(self) -> list[str]:
        def counts(mapping: dict[str, int]) -> str:
            return ", ".join(f"{key} {value}" for key, value in mapping.items())

        return [
            f"History: {self.history_start:%Y-%m-%d} to {self.history_end:%Y-%m-%d}",
            f"Partners: {self.partners} (tiers: {counts(self.tiers)}; types: {counts(self.types)})",
            f"Contacts: {self.contacts}; certifications: {self.certifications}",
            f"Activities: {self.activities}",
            f"Deals: {self.deals} ({counts(self.stages)})",
            f"Account managers: {', '.join(self.managers)}",
            f"Partner users: {', '.join(self.partner_users)} (no password: set one in the admin to log in as them)",
            f"Declining partners: {', '.join(self.declining)}",
            f"Recovering partners: {', '.join(self.recovering)}",
        ]


# Random helpers ----------------------------------------------------------------------------------


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, count, product = math.exp(-lam), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _binomial(rng: random.Random, trials: int, probability: float) -> int:
    return sum(1 for _ in range(trials) if rng.random() < probability)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _spread(rng: random.Random, count: int, shares: list[float]) -> list[int]:
    """`count` category indexes in proportion to `shares`, each category at least once when count allows."""
    minimum = 1 if count >= len(shares) else 0
    sizes = [minimum] * len(shares)
    remaining = count - sum(sizes)
    exact = [share * remaining for share in shares]
    for index, value in enumerate(exact):
        sizes[index] += int(value)
    # Largest remainders first, ties by category order, so the split is stable.
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    for index in order[: count - sum(sizes)]:
        sizes[index] += 1
    labels = [index for index, size in enumerate(sizes) for _ in range(size)]
    rng.shuffle(labels)
    return labels


def _money(amount: float, step: int = 1) -> Decimal:
    return Decimal(max(step, int(round(amount / step)) * step))


# The plan of one partner -------------------------------------------------------------------------


@dataclass
class _PartnerPlan:
    number: int
    external_id: str
    name: str
    domain: str
    type: str
    tier_rank: int
    region: str
    status: str
    owner: str | None
    joined_on: datetime.date
    active_until: datetime.datetime | None
    trajectory: str  # steady, declining, recovering
    revenue_target: Decimal
    baseline: float
    efficiency: float
    relative: list[float] = field(default_factory=list)  # engagement relative to the baseline, per week


def _trajectory(rng: random.Random, plan: _PartnerPlan, week_starts: list[datetime.datetime]) -> list[float]:
    """Weekly engagement relative to the partner's baseline: slow drift, weekly noise, season, story."""
    slow, fast = rng.gauss(0, 0.15), 0.0
    fade_weeks, fade_to = rng.randint(13, 17), rng.uniform(0.15, 0.35)
    recover_at, recover_over, low, high = WEEKS - rng.randint(20, 26), rng.randint(8, 10), rng.uniform(0.3, 0.45), 1.1
    joined = datetime.datetime.combine(plan.joined_on, datetime.time(), tzinfo=week_starts[0].tzinfo)
    relative = []
    for week, start in enumerate(week_starts):
        slow = 0.95 * slow + rng.gauss(0, 0.06)
        fast = 0.5 * fast + rng.gauss(0, 0.08)
        level = math.exp(slow + fast)
        middle = start + datetime.timedelta(days=3)
        if middle.month == 8:
            level *= 0.85
        if (middle.month == 12 and middle.day >= 20) or (middle.month == 1 and middle.day <= 3):
            level *= 0.7
        if plan.trajectory == "declining" and week >= WEEKS - fade_weeks:
            progress = (week - (WEEKS - fade_weeks) + 1) / fade_weeks
            level *= 1 - (1 - fade_to) * progress
        elif plan.trajectory == "recovering":
            progress = _clamp((week - recover_at) / recover_over, 0, 1)
            level *= low + (high - low) * progress
        if start + datetime.timedelta(days=7) > joined:
            weeks_in = (start - joined).days / 7
            level *= _clamp(0.4 + 0.6 * weeks_in / 8, 0.4, 1)
        if plan.active_until is not None:
            weeks_left = (plan.active_until - start).days / 7
            level *= _clamp(weeks_left / 8, 0.2, 1)
        relative.append(level)
    return relative


def _plans(seed: int, partners: int, end: datetime.datetime) -> list[_PartnerPlan]:
    rng = random.Random(f"prm-demo:{seed}:program")
    tiers = _spread(rng, partners, TIER_SHARE)
    types = _spread(rng, partners, TYPE_SHARE)
    regions = _spread(rng, partners, REGION_SHARE)
    numbers = rng.sample(range(100000, 1000000), partners)
    managers_by_region: dict[str, list[str]] = {}
    for username, _first, _last, region in MANAGERS:
        managers_by_region.setdefault(region, []).append(username)

    used_names: set[str] = set()
    used_domains: set[str] = set()
    plans = []
    for index in range(partners):
        type_, region = TYPES[types[index]], REGIONS[regions[index]]
        for _attempt in range(30):
            stem, suffix = rng.choice(NAME_STEMS), rng.choice(TYPE_SUFFIXES[type_])
            name = f"{stem} {suffix} {rng.choice(REGION_SUFFIXES[region])}"
            if name not in used_names:
                break
        else:
            name = f"{name} {index + 1}"
        used_names.add(name)
        # Same stem and suffix in two regions are two companies: their contacts' addresses differ.
        domain = f"{stem}-{suffix}".lower().replace(" ", "-")
        if domain in used_domains:
            domain = f"{domain}-{index + 1}"
        used_domains.add(domain)
        roll = rng.random()
        status = "onboarding" if roll < 0.05 else "exited" if roll < 0.08 else "probation" if roll < 0.12 else "active"
        if status == "onboarding":
            joined_on = (end - datetime.timedelta(days=rng.randint(20, 120))).date()
        else:
            joined_on = (end - datetime.timedelta(days=rng.randint(400, 2500))).date()
        active_until = end - datetime.timedelta(days=rng.randint(60, 150)) if status == "exited" else None
        owner = None if rng.random() < 0.04 else rng.choice(managers_by_region[region])
        plans.append(
            _PartnerPlan(
                number=index,
                external_id=f"PTR-{numbers[index]}",
                name=name,
                domain=f"{domain}.example",
                type=type_,
                tier_rank=tiers[index],
                region=region,
                status=status,
                owner=owner,
                joined_on=joined_on,
                active_until=active_until,
                trajectory="steady",
                revenue_target=_money(REVENUE_TARGET[tiers[index]] * rng.lognormvariate(0, 0.2), 5000),
                baseline=ENGAGEMENT[tiers[index]] * rng.lognormvariate(0, 0.3),
                efficiency=rng.lognormvariate(0, 0.25),
            )
        )

    # The stories worth telling: established, still active partners that fade or come back.
    candidates = [plan for plan in plans if plan.status in ("active", "probation")]
    rng.shuffle(candidates)
    declining = max(2 if partners >= 10 else 1, round(partners * 0.07))
    recovering = max(1, round(partners * 0.05))
    for plan in candidates[:declining]:
        plan.trajectory = "declining"
    for plan in candidates[declining : declining + recovering]:
        plan.trajectory = "recovering"
    return plans


# Rows of one partner ------------------------------------------------------------------------------


class _PartnerRows:
    """Generates the contacts, deals, certifications and activities of one partner."""

    def __init__(self, *, plan: _PartnerPlan, seed: int, end: datetime.datetime, week_starts: list):
        self.plan = plan
        self.rng = random.Random(f"prm-demo:{seed}:partner:{plan.number}")
        self.end = end
        self.week_starts = week_starts
        self.counters: Counter[str] = Counter()
        plan.relative = _trajectory(self.rng, plan, week_starts)

    def _when(self, start: datetime.datetime, days: int = 5) -> datetime.datetime:
        """A working-hours instant within `days` days of `start`."""
        return start + datetime.timedelta(
            days=self.rng.randrange(days), hours=self.rng.randint(8, 17), minutes=self.rng.randrange(60)
        )

    def _active(self, week: int) -> bool:
        start = self.week_starts[week]
        joined = datetime.datetime.combine(self.plan.joined_on, datetime.time(), tzinfo=start.tzinfo)
        if start < joined:
            return False
        return self.plan.active_until is None or start < self.plan.active_until

    def level(self, week: int) -> float:
        return self.plan.baseline * self.plan.relative[max(0, week)]

    def contacts(self) -> list[dict]:
        low, high = CONTACTS[self.plan.tier_rank]
        rows, emails = [], set()
        for index in range(self.rng.randint(low, high)):
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
            email = f"{first}.{last}@{self.plan.domain}".lower()
            if email in emails:
                continue
            emails.add(email)
            role = CONTACT_ROLES[index] if index < len(CONTACT_ROLES) else self.rng.choice(CONTACT_ROLES[1:4])
            rows.append({"name": f"{first} {last}", "email": email, "role": role})
        return rows

    def deals(self) -> list[dict]:
        plan, rng = self.plan, self.rng
        rows = []
        for week in range(WEEKS):
            if not self._active(week):
                continue
            # Registrations follow engagement a month later; engaged partners also win more often.
            registrations = _poisson(rng, DEALS_PER_WEEK[plan.tier_rank] * self.level(week - 4) * plan.efficiency)
            for _ in range(registrations):
                registered_at = self._when(self.week_starts[week], 7)
                if registered_at >= self.end:
                    continue
                amount = _money(DEAL_SIZE[plan.tier_rank] * rng.lognormvariate(0, 0.6), 100)
                approval_days = rng.randint(1, 10)
                cycle_days = rng.randint(21, 100)
                win_probability = _clamp(0.2 + 0.3 * plan.relative[week] * plan.efficiency, 0.05, 0.85)
                rejected = rng.random() < 0.08
                won = rng.random() < win_probability
                closed_at = registered_at + datetime.timedelta(days=cycle_days, hours=rng.randint(0, 8))
                if plan.active_until is not None and closed_at > plan.active_until:
                    won, closed_at = False, max(registered_at, plan.active_until) + datetime.timedelta(days=7)
                if registered_at + datetime.timedelta(days=approval_days) > self.end:
                    stage, closed_at = "registered", None
                elif rejected:
                    stage, closed_at = "rejected", None
                elif closed_at <= self.end:
                    stage = "won" if won else "lost"
                else:
                    stage, closed_at = "approved", None
                self.counters["deal"] += 1
                customer = f"{rng.choice(CUSTOMER_WORDS)} {rng.choice(CUSTOMER_SUFFIXES)}"
                rows.append(
                    {
                        "external_id": f"{plan.external_id}-D{self.counters['deal']:04d}",
                        "name": f"{customer}: {rng.choice(DEAL_PRODUCTS)} {rng.choice(DEAL_KINDS)}",
                        "amount": amount,
                        "stage": stage,
                        "registered_at": registered_at,
                        "closed_at": closed_at,
                    }
                )
        return rows

    def certifications(self, contacts: list[int]) -> list[dict]:
        plan, rng = self.plan, self.rng
        today = self.end.date()
        joined_days = (today - plan.joined_on).days
        tier = TIERS[plan.tier_rank]
        rows, keys = [], set()
        for role, minimum in zip(("sales", "technical", "delivery"), tier[3:6], strict=True):
            active = max(0, minimum + rng.choice([-1, 0, 0, 1, 1, 2]))
            lapsed = rng.choice([0, 0, 1, 1, 2])
            for number in range(active + lapsed):
                if number < active:
                    age = rng.randint(5, min(CERTIFICATION_VALID_DAYS - 5, max(6, joined_days)))
                else:
                    age = rng.randint(CERTIFICATION_VALID_DAYS + 1, CERTIFICATION_VALID_DAYS + 400)
                    if age > joined_days:
                        continue
                earned_on = today - datetime.timedelta(days=age)
                name = rng.choice(CERTIFICATIONS[role])
                contact = rng.choice(contacts) if contacts else None
                key = (name, role, earned_on, contact)
                if key in keys:
                    continue
                keys.add(key)
                rows.append(
                    {
                        "name": name,
                        "role": role,
                        "earned_on": earned_on,
                        "expires_on": earned_on + datetime.timedelta(days=CERTIFICATION_VALID_DAYS),
                        "contact_id": contact,
                    }
                )
        if joined_days > 30 and rng.random() < 0.6:
            # The entry badge never expires.
            earned_on = max(plan.joined_on, today - datetime.timedelta(days=1000)) + datetime.timedelta(days=14)
            rows.append(
                {
                    "name": "Partner Foundations",
                    "role": "sales",
                    "earned_on": earned_on,
                    "expires_on": None,
                    "contact_id": contacts[0] if contacts else None,
                }
            )
        return rows

    def _activity(self, kind: str, at: datetime.datetime, quantity: int = 1, value=None, **extra) -> dict:
        self.counters[kind] += 1
        contact = extra.pop("contact", None)
        return {
            "kind": kind,
            "occurred_at": at,
            "quantity": quantity,
            "value": value,
            "external_id": f"{self.plan.external_id}-{kind}-{self.counters[kind]:04d}",
            "contact_id": contact,
            "metadata": extra,
        }

    def activities(self, contacts: list[int], deals: list[dict]) -> list[dict]:
        plan, rng = self.plan, self.rng
        rows: list[dict] = []
        open_bias = rng.uniform(0.7, 1.3)
        sentiment_bias = rng.gauss(0, 0.8)
        offset = rng.randrange(4)
        for week, start in enumerate(self.week_starts):
            if not self._active(week):
                continue
            level, relative = self.level(week), plan.relative[week]
            if quantity := _poisson(rng, 7 * level):
                rows.append(self._activity("portal_login", self._when(start), quantity))
            if quantity := _poisson(rng, 12 * level):
                rows.append(self._activity("content_view", self._when(start), quantity))
            if week % 2 == 0 and contacts:
                # The vendor's newsletter goes to every contact; opening it is the partner's doing.
                sent_at = start + datetime.timedelta(days=1, hours=9)
                rows.append(self._activity("email_sent", sent_at, len(contacts), newsletter=f"{sent_at:%Y-%m-%d}"))
                # Partners that engage more open more: the open rate follows the engagement level (the
                # partner's baseline and its drift), so it tells partners apart as their revenue does.
                opened = _binomial(rng, len(contacts), _clamp(0.25 * level * open_bias, 0.02, 0.95))
                if opened:
                    rows.append(
                        self._activity("email_opened", sent_at + datetime.timedelta(hours=rng.randint(1, 60)), opened)
                    )
            if week % 4 == offset and (quantity := _poisson(rng, 0.6 * level)):
                rows.append(
                    self._activity(
                        "event_attended",
                        self._when(start),
                        quantity,
                        event=rng.choice(EVENTS),
                        contact=rng.choice(contacts),
                    )
                )
            if week % 6 == offset and rng.random() < _clamp(0.5 * level, 0, 0.95):
                rows.append(self._activity("campaign_joined", self._when(start), campaign=rng.choice(CAMPAIGNS)))
            if week % 4 == (offset + 1) % 4:
                rows.extend(self._training(start, relative, contacts))
            if week % 2 == 1 and (quantity := _poisson(rng, (0.4 + 0.2 * plan.tier_rank) * (0.5 + 0.5 * relative))):
                rows.append(
                    self._activity(
                        "meeting_held",
                        self._when(start),
                        quantity,
                        topic=rng.choice(MEETING_TOPICS),
                        contact=contacts[0],
                    )
                )
            if week % 6 == (offset + 2) % 6:
                rating = round(_clamp(rng.gauss(4.5 + 3.0 * min(relative, 1.3) + sentiment_bias, 1.0), 0, 10))
                rows.append(self._activity("sentiment_recorded", self._when(start), value=Decimal(rating)))
        rows.extend(self._incentives(deals))
        return rows

    def _training(self, start: datetime.datetime, relative: float, contacts: list[int]) -> list[dict]:
        rng = self.rng
        assigned = 1 + _poisson(rng, 0.4 * (self.plan.tier_rank + 1))
        course = rng.choice(COURSES)
        rows = [self._activity("training_assigned", self._when(start), assigned, course=course)]
        completed = _binomial(rng, assigned, _clamp(0.3 + 0.45 * relative, 0.05, 0.95))
        completed_at = rows[0]["occurred_at"] + datetime.timedelta(days=rng.randint(5, 25))
        if completed and completed_at < self.end:
            rows.append(
                self._activity(
                    "training_completed", completed_at, completed, course=course, contact=rng.choice(contacts)
                )
            )
        return rows

    def _quarters(self) -> list[tuple[datetime.datetime, datetime.datetime]]:
        """Calendar quarters that overlap the history, as (start, end) instants."""
        tz = self.end.tzinfo
        first = self.week_starts[0]
        year, month = first.year, (first.month - 1) // 3 * 3 + 1
        quarters = []
        while True:
            start = datetime.datetime(year, month, 1, tzinfo=tz)
            if start >= self.end:
                return quarters
            year, month = (year + 1, 1) if month == 10 else (year, month + 3)
            quarters.append((start, datetime.datetime(year, month, 1, tzinfo=tz)))

    def _week_of(self, at: datetime.datetime) -> int:
        return _clamp((at - self.week_starts[0]).days // 7, 0, WEEKS - 1)

    def _incentives(self, deals: list[dict]) -> list[dict]:
        plan, rng = self.plan, self.rng
        rows = []
        won = [deal for deal in deals if deal["stage"] == "won"]
        for quarter_start, quarter_end in self._quarters():
            start = max(quarter_start, self.week_starts[0])
            stop = min(quarter_end, self.end)
            if plan.active_until is not None:
                stop = min(stop, plan.active_until)
            if MDF[plan.tier_rank] and (stop - start).days > 14:
                allocated = _money(MDF[plan.tier_rank] * rng.lognormvariate(0, 0.2), 500)
                allocated_at = self._when(start)
                rows.append(
                    self._activity("mdf_allocated", allocated_at, value=allocated, quarter=f"{quarter_start:%Y-%m}")
                )
                weeks = range(self._week_of(allocated_at), self._week_of(stop - datetime.timedelta(days=1)) + 1)
                engagement = sum(plan.relative[week] for week in weeks) / len(weeks)
                share = _clamp(0.3 + 0.5 * engagement + rng.gauss(0, 0.1), 0, 1) * (stop - start).days / 91
                claims = rng.randint(1, 3)
                for _ in range(claims):
                    claimed_at = allocated_at + datetime.timedelta(
                        days=rng.randint(7, max(7, (stop - allocated_at).days - 1)), hours=rng.randint(0, 6)
                    )
                    amount = _money(float(allocated) * min(share, 1) / claims, 10)
                    if claimed_at < min(stop, self.end) and share > 0.05:
                        rows.append(self._activity("mdf_claimed", claimed_at, value=amount))
            revenue = sum(deal["amount"] for deal in won if quarter_start <= deal["closed_at"] < quarter_end)
            accrued_at = quarter_end + datetime.timedelta(days=rng.randint(3, 12), hours=10)
            if revenue and accrued_at < self.end:
                rebate = _money(float(revenue) * REBATE_RATE[plan.tier_rank], 1)
                rows.append(
                    self._activity("rebate_accrued", accrued_at, value=rebate, quarter=f"{quarter_start:%Y-%m}")
                )
        for deal in won:
            claimed_at = deal["closed_at"] + datetime.timedelta(days=rng.randint(1, 10))
            if rng.random() < 0.35 and claimed_at < self.end:
                amount = _money(rng.uniform(250, 1500), 50)
                rows.append(self._activity("spiff_claimed", claimed_at, value=amount, deal=deal["external_id"]))
        return rows


# Writing ------------------------------------------------------------------------------------------


def _tiers_ensure() -> dict[int, Tier]:
    """Create or update the four tiers in place (their ids stay, so references to them hold)."""
    existing = Tier.objects.in_bulk([spec[0] for spec in TIERS], field_name="slug")
    to_create, to_update = [], []
    for slug, name, rank, sales, technical, delivery, revenue, health in TIERS:
        values = {
            "name": name,
            "rank": rank,
            "min_sales_certifications": sales,
            "min_technical_certifications": technical,
            "min_delivery_certifications": delivery,
            "min_quarterly_revenue": revenue,
            "min_health_score": health,
        }
        tier = existing.get(slug)
        if tier is None:
            to_create.append(Tier(slug=slug, **values))
        elif any(getattr(tier, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(tier, key, value)
            to_update.append(tier)
    if to_create:
        bulk_create_with_history(to_create, Tier)
    if to_update:
        bulk_update_with_history(to_update, Tier, list(values))
    return {tier.rank: tier for tier in Tier.objects.filter(slug__in=[spec[0] for spec in TIERS])}


def _users_ensure(specs: list[dict], group_name: str, *, staff: bool = False) -> dict[str, int]:
    """Create the users that do not exist yet (no usable password) and put all of them in the group."""
    User = get_user_model()
    existing = dict(
        User.objects.filter(username__in=[spec["username"] for spec in specs]).values_list("username", "id")
    )
    missing = []
    for spec in specs:
        if spec["username"] not in existing:
            user = User(**spec)
            user.set_unusable_password()
            missing.append(user)
    User.objects.bulk_create(missing)
    ids = dict(User.objects.filter(username__in=[spec["username"] for spec in specs]).values_list("username", "id"))
    if staff:
        User.objects.filter(id__in=ids.values(), is_staff=False).update(is_staff=True)
    group = Group.objects.get(name=group_name)
    User.groups.through.objects.bulk_create(
        [User.groups.through(user_id=user_id, group_id=group.id) for user_id in ids.values()], ignore_conflicts=True
    )
    return ids


def demo_program_reset() -> int:
    """Delete the partner program (partners and everything of theirs, partner users); return partners deleted.

    Tiers, activity kinds, account managers and scoring configuration stay: seeding updates them in place.
    """
    User = get_user_model()
    with transaction.atomic():
        partner_user_ids = list(PartnerMembership.objects.values_list("user_id", flat=True))
        # Rows without delete signals go in one statement each, so that deleting partners collects little.
        Activity.objects.all().delete()
        Deal.objects.all().delete()
        Certification.objects.all().delete()
        Contact.objects.all().delete()
        PartnerMembership.objects.all().delete()
        deleted = Partner.objects.count()
        Partner.objects.all().delete()
        User.objects.filter(id__in=partner_user_ids, is_staff=False, is_superuser=False).delete()
    return deleted


def demo_program_create(*, partners: int, seed: int, now: datetime.datetime | None = None) -> DemoSummary:
    """Write a demo partner program of `partners` partners with a year of history ending today at midnight.

    Refuses (DemoError) when the database already has partners. The same seed gives the same program.
    """
    if partners < 1:
        raise DemoError("Seed at least one partner.")
    if Partner.objects.exists():
        raise DemoError("The database already has partners; reset it first (seed_demo --reset deletes them).")
    kinds = dict(ActivityKind.objects.values_list("key", "id"))
    shipped = ["portal_login", "content_view", "email_sent", "email_opened", "event_attended", "campaign_joined"]
    shipped += ["training_assigned", "training_completed", "mdf_allocated", "mdf_claimed", "rebate_accrued"]
    shipped += ["spiff_claimed", "meeting_held", "sentiment_recorded"]
    if missing := [key for key in shipped if key not in kinds]:
        raise DemoError(f"Activity kinds missing (run migrate): {', '.join(missing)}")

    end = timezone.localtime(now or timezone.now()).replace(hour=0, minute=0, second=0, microsecond=0)
    week_starts = [end - datetime.timedelta(weeks=WEEKS - week) for week in range(WEEKS)]
    plans = _plans(seed, partners, end)
    generators = [_PartnerRows(plan=plan, seed=seed, end=end, week_starts=week_starts) for plan in plans]
    summary = DemoSummary(history_start=week_starts[0], history_end=end)

    with transaction.atomic():
        tiers = _tiers_ensure()
        managers = _users_ensure(
            [
                {"username": u, "first_name": f, "last_name": la, "email": f"{u}@vendor.example", "is_staff": True}
                for u, f, la, _region in MANAGERS
            ],
            ACCOUNT_MANAGER,
            staff=True,
        )
        summary.managers = list(managers)
        partners_upsert(
            items=[
                {
                    "external_id": plan.external_id,
                    "name": plan.name,
                    "type": plan.type,
                    "tier": tiers[plan.tier_rank].id,
                    "region": plan.region,
                    "status": plan.status,
                    "owner": managers.get(plan.owner),
                    "quarterly_revenue_target": plan.revenue_target,
                    "joined_on": plan.joined_on,
                    "agreement_start": plan.joined_on,
                    "agreement_end": plan.active_until.date() if plan.active_until else None,
                }
                for plan in plans
            ]
        )
        partner_ids = dict(
            Partner.objects.filter(external_id__in=[plan.external_id for plan in plans]).values_list(
                "external_id", "id"
            )
        )

        contact_rows = [(plan, generator.contacts()) for plan, generator in zip(plans, generators, strict=True)]
        Contact.objects.bulk_create(
            [Contact(partner_id=partner_ids[plan.external_id], **row) for plan, rows in contact_rows for row in rows],
            batch_size=2000,
        )
        contact_ids: dict[int, dict[str, int]] = {}
        for partner_id, email, contact_id in Contact.objects.filter(partner_id__in=partner_ids.values()).values_list(
            "partner_id", "email", "id"
        ):
            contact_ids.setdefault(partner_id, {})[email] = contact_id
        contacts_of = {
            plan.external_id: [contact_ids[partner_ids[plan.external_id]][row["email"]] for row in rows]
            for plan, rows in contact_rows
        }

        deals_of, deal_items, certification_items = {}, [], []
        for plan, generator in zip(plans, generators, strict=True):
            partner_id = partner_ids[plan.external_id]
            deals_of[plan.external_id] = generator.deals()
            deal_items += [{"partner": partner_id, **deal} for deal in deals_of[plan.external_id]]
            certification_items += [
                {"partner": partner_id, **row} for row in generator.certifications(contacts_of[plan.external_id])
            ]
        deals_upsert(items=deal_items)
        certifications_upsert(items=certification_items)

        batch: list[dict] = []
        for plan, generator in zip(plans, generators, strict=True):
            partner_id = partner_ids[plan.external_id]
            rows = generator.activities(contacts_of[plan.external_id], deals_of[plan.external_id])
            if batch and len(batch) + len(rows) > ACTIVITY_BATCH:
                summary.activities += activities_ingest(items=batch).created
                batch = []
            for row in rows:
                row["kind"] = kinds[row["kind"]]
                row["partner"] = partner_id
                row["source"] = DEMO_SOURCE
            batch += rows
        if batch:
            summary.activities += activities_ingest(items=batch).created

        # Partner logins for a couple of partners: a steady one of the top tiers and a declining one.
        showcase = [
            max(plans, key=lambda plan: (plan.trajectory == "steady" and plan.status == "active", plan.tier_rank))
        ]
        showcase += [plan for plan in plans if plan.trajectory == "declining" and plan is not showcase[0]][:1]
        first_contact = {plan.external_id: rows[0] for plan, rows in contact_rows}
        specs = [
            {
                "username": first_contact[plan.external_id]["email"],
                "email": first_contact[plan.external_id]["email"],
                "first_name": first_contact[plan.external_id]["name"].split(" ")[0],
                "last_name": first_contact[plan.external_id]["name"].split(" ", 1)[1],
            }
            for plan in showcase
        ]
        partner_users = _users_ensure(specs, PARTNER_USER)
        PartnerMembership.objects.filter(user_id__in=partner_users.values()).delete()
        PartnerMembership.objects.bulk_create(
            [
                PartnerMembership(user_id=partner_users[spec["username"]], partner_id=partner_ids[plan.external_id])
                for spec, plan in zip(specs, showcase, strict=True)
            ]
        )
        summary.partner_users = [
            f"{spec['username']} ({plan.external_id})" for spec, plan in zip(specs, showcase, strict=True)
        ]

    summary.partners = len(plans)
    summary.contacts = sum(len(rows) for _plan, rows in contact_rows)
    summary.deals = len(deal_items)
    summary.certifications = len(certification_items)
    summary.tiers = {TIERS[rank][0]: count for rank, count in sorted(Counter(p.tier_rank for p in plans).items())}
    summary.types = {type_: count for type_ in TYPES if (count := sum(1 for p in plans if p.type == type_))}
    stages = Counter(deal["stage"] for deal in deal_items)
    summary.stages = {stage: stages[stage] for stage in Deal.Stage.values if stages[stage]}
    summary.declining = [plan.external_id for plan in plans if plan.trajectory == "declining"]
    summary.recovering = [plan.external_id for plan in plans if plan.trajectory == "recovering"]
    return summary
