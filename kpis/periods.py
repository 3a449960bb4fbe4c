"""Calendar periods (quarters "2026-Q3" and months "2026-07") and their boundaries in the project's time zone.

A period runs from local midnight of its first day (included) to local midnight of the next period's
first day (excluded). Its KPI values are measured as of its last instant, one microsecond before the
end (the database's resolution), over a window as long as the period itself, so the window is exactly
the period: an event at midnight on 1 October belongs to Q4, and date-based KPIs (active
certifications, days since the last review) read the period's last day. A quarter is 90 to 92 days
long and a month 28 to 31; across a daylight-saving change a period is an hour shorter or longer,
and the window follows it to the hour.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from django.utils import timezone

QUARTER = "quarter"
MONTH = "month"
PERIOD_PATTERN = r"^\d{4}-(Q[1-4]|0[1-9]|1[0-2])$"
_PARSE = re.compile(r"^(?P<year>\d{4})-(?:Q(?P<quarter>[1-4])|(?P<month>0[1-9]|1[0-2]))$")
_RESOLUTION = datetime.timedelta(microseconds=1)


class PeriodError(ValueError):
    """A string that names no period."""


@dataclass(frozen=True, order=True)
class Period:
    """One calendar quarter or month. Ordered by start within a kind; `str()` gives its key ("2026-Q3")."""

    kind: str  # QUARTER | MONTH
    year: int
    number: int  # 1-4 for a quarter, 1-12 for a month

    # Construction --------------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PARSE.match(text.strip()) if isinstance(text, str) else None
        if match is None or int(match["year"]) < 1:
            raise PeriodError(f"'{text}' is not a period: give a quarter like 2026-Q3 or a month like 2026-07.")
        if match["quarter"]:
            return cls(QUARTER, int(match["year"]), int(match["quarter"]))
        return cls(MONTH, int(match["year"]), int(match["month"]))

    @classmethod
    def containing(cls, instant: datetime.datetime, kind: str = QUARTER) -> Period:
        """The period of `kind` in which an instant falls, read in the project's time zone."""
        day = timezone.localtime(instant, timezone.get_default_timezone()).date()
        return cls.of_date(day, kind)

    @classmethod
    def of_date(cls, day: datetime.date, kind: str = QUARTER) -> Period:
        if kind == QUARTER:
            return cls(QUARTER, day.year, (day.month - 1) // 3 + 1)
        return cls(MONTH, day.year, day.month)

    @classmethod
    def current(cls, kind: str = QUARTER) -> Period:
        return cls.containing(timezone.now(), kind)

    # Names ---------------------------------------------------------------------------------------

    def __str__(self) -> str:
        return f"{self.year:04d}-Q{self.number}" if self.kind == QUARTER else f"{self.year:04d}-{self.number:02d}"

    @property
    def key(self) -> str:
        return str(self)

    @property
    def label(self) -> str:
        if self.kind == QUARTER:
            return f"Q{self.number} {self.year}"
        return self.first_day.strftime("%B %Y")

    # Calendar ------------------------------------------------------------------------------------

    @property
    def months(self) -> int:
        return 3 if self.kind == QUARTER else 1

    @property
    def first_day(self) -> datetime.date:
        month = (self.number - 1) * 3 + 1 if self.kind == QUARTER else self.number
        return datetime.date(self.year, month, 1)

    @property
    def last_day(self) -> datetime.date:
        return self.next().first_day - datetime.timedelta(days=1)

    def _shift(self, steps: int) -> Period:
        per_year = 4 if self.kind == QUARTER else 12
        index = self.year * per_year + (self.number - 1) + steps
        return Period(self.kind, index // per_year, index % per_year + 1)

    def next(self) -> Period:
        return self._shift(1)

    def previous(self) -> Period:
        return self._shift(-1)

    def back(self, count: int) -> list[Period]:
        """This period and the `count - 1` before it, newest first."""
        return [self._shift(-step) for step in range(count)]

    def months_in(self) -> list[Period]:
        first = Period(MONTH, self.year, self.first_day.month)
        return [first._shift(step) for step in range(self.months)]

    # Instants (project time zone) ----------------------------------------------------------------

    @property
    def start(self) -> datetime.datetime:
        """Local midnight of the first day: the first instant of the period."""
        return _local_midnight(self.first_day)

    @property
    def end(self) -> datetime.datetime:
        """Local midnight of the next period's first day: the first instant after the period."""
        return _local_midnight(self.next().first_day)

    @property
    def as_of(self) -> datetime.datetime:
        """The period's last instant, as of which its KPI values are measured."""
        return self.end - _RESOLUTION

    @property
    def length(self) -> datetime.timedelta:
        """The window of the period's KPIs: (as_of - length, as_of] is exactly [start, end)."""
        return self.end - self.start

    @property
    def days(self) -> int:
        return (self.next().first_day - self.first_day).days

    def is_closed(self, now: datetime.datetime | None = None) -> bool:
        return (now or timezone.now()) >= self.end

    def has_started(self, now: datetime.datetime | None = None) -> bool:
        return (now or timezone.now()) >= self.start

    def measured_at(self, now: datetime.datetime | None = None) -> tuple[datetime.datetime, datetime.timedelta]:
        """(as_of, window) for values of this period now: the whole period once closed, else period-to-date."""
        now = now or timezone.now()
        if now >= self.end:
            return self.as_of, self.length
        return now, now - self.start + _RESOLUTION


def _local_midnight(day: datetime.date) -> datetime.datetime:
    # Where a zone skips midnight (clocks jump 00:00 -> 01:00), fold=0 reads it with the offset before the
    # jump, which is the day's first real instant (01:00); where midnight repeats, fold=0 is the first one.
    local = datetime.datetime.combine(day, datetime.time.min, tzinfo=timezone.get_default_timezone())
    # In UTC: Python subtracts datetimes of one zone by wall clock, which would hide a daylight-saving hour.
    return local.astimezone(datetime.UTC)


def latest_closed(kind: str = QUARTER, now: datetime.datetime | None = None) -> Period:
    """The most recent period of `kind` that has ended."""
    return Period.containing(now or timezone.now(), kind).previous()
