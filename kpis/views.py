"""Web pages of the KPI layer: portfolio comparison, partner KPI table, review summaries (PDF), tier review.

The comparison exports CSV; summaries print cleanly and download as PDF; the tier review approves changes.
Views stay thin: who may see what (prm.roles), which rows (kpis.selectors, kpis.summary, kpis.tiers),
what changes (kpis.services).
"""

from __future__ import annotations

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from kpis import selectors
from kpis.pdf import pdf_from_template
from kpis.periods import MONTH, QUARTER, Period, PeriodError
from kpis.registry import kpi_catalogue
from kpis.services import tier_change_approve
from kpis.summary import default_review_period, review_summary
from kpis.targets import NEAR_TARGET
from kpis.tiers import STATUS_LABELS, tier_review, tier_review_groups
from prm.api.filters import PartnerFilter
from prm.models import Partner, Tier
from prm.roles import is_partner_user, staff_page, visible_partners

PAGE_SIZE = 50
TIER_PERMISSION = "kpis.add_tierchange"


def _period(request, default: Period) -> tuple[Period, str | None]:
    raw = (request.GET.get("period") or "").strip()
    if not raw:
        return default, None
    try:
        period = Period.parse(raw)
    except PeriodError as exc:
        return default, str(exc)
    if not period.has_started():
        return default, f"{period} has not started yet."
    return period, None


def _period_choices(now) -> list[Period]:
    """Recent quarters and months to pick from: this one and the seven before, this month and eleven before."""
    return [*Period.containing(now, QUARTER).back(8), *Period.containing(now, MONTH).back(12)]


def _partner(user, external_id: str) -> Partner:
    return get_object_or_404(visible_partners(user).select_related("tier", "owner"), external_id=external_id)


# Portfolio comparison ----------------------------------------------------------------------------


def _comparison_request(request):
    now = timezone.now()
    period, problem = _period(request, Period.containing(now))
    catalogue = kpi_catalogue()
    keys = list(dict.fromkeys(key for key in request.GET.getlist("kpi") if key in catalogue))
    keys = keys or list(selectors.DEFAULT_COMPARISON_KPIS)
    filterset = PartnerFilter(
        {name: request.GET.get(name) for name in ("tier", "type", "region", "status", "owner", "search")},
        queryset=visible_partners(request.user).exclude(status=Partner.Status.EXITED),
    )
    partners = filterset.qs if filterset.is_valid() else visible_partners(request.user).none()
    sort = request.GET.get("sort") or "name"
    comparison = selectors.kpi_comparison(partners=partners, period=period, keys=keys, sort=sort, now=now)
    return now, period, problem, catalogue, keys, filterset, comparison


@require_GET
@staff_page
def portfolio_kpis(request):
    now, period, problem, catalogue, keys, filterset, comparison = _comparison_request(request)
    page = Paginator(comparison.rows, PAGE_SIZE).get_page(request.GET.get("page"))
    shown = Partner.objects.select_related("tier", "owner").in_bulk([pk for pk, _ in page.object_list])
    units = [kpi.unit for kpi in comparison.kpis]
    rows = [
        {"partner": shown[pk], "cells": list(zip([cells[key] for key in keys], units, strict=True))}
        for pk, cells in page.object_list
    ]
    columns = []
    for kpi in comparison.kpis:
        active = comparison.sort.lstrip("-") == kpi.key
        descending = active and comparison.sort.startswith("-")
        # A click sorts best first: descending when higher is better, ascending when lower is.
        first = f"-{kpi.key}" if kpi.better == "higher" else kpi.key
        flipped = kpi.key if comparison.sort == f"-{kpi.key}" else f"-{kpi.key}"
        columns.append({"kpi": kpi, "active": active, "descending": descending, "next": flipped if active else first})
    context = {
        "nav": "kpis",
        "period": period,
        "problem": problem,
        "periods": _period_choices(now),
        "catalogue": list(catalogue.values()),
        "keys": keys,
        "columns": columns,
        "name_sort": "-name" if comparison.sort == "name" else "name",
        "sort": comparison.sort,
        "page": page,
        "rows": rows,
        "filters": filterset.form.data,
        "filter_errors": filterset.form.errors if not filterset.is_valid() else {},
        "tiers": Tier.objects.order_by("rank").values_list("slug", "name"),
        "types": Partner.Type.choices,
        "statuses": Partner.Status.choices,
        "near": int(NEAR_TARGET * 100),
    }
    return render(request, "kpis/portfolio.html", context)


class _Echo:
    def write(self, value):
        return value


@require_GET
@staff_page
def portfolio_kpis_export(request):
    """The comparison as CSV (every filtered partner, in the page's order): value, target and attainment per KPI."""
    now, period, _, _, keys, _, comparison = _comparison_request(request)
    details = {
        pk: (external_id, name, tier or "", owner or "")
        for pk, external_id, name, tier, owner in Partner.objects.filter(
            pk__in=[pk for pk, _ in comparison.rows]
        ).values_list("pk", "external_id", "name", "tier__slug", "owner__username")
    }
    writer = csv.writer(_Echo())

    def number(value):
        return "" if value is None else f"{value:.6g}"

    def lines():
        header = ["period", "external_id", "name", "tier", "owner"]
        for key in keys:
            header += [key, f"{key}_target", f"{key}_attainment"]
        yield writer.writerow(header)
        for pk, cells in comparison.rows:
            row = [str(period), *details[pk]]
            for key in keys:
                cell = cells[key]
                row += [number(cell.value), number(cell.target.value if cell.target else None), number(cell.attainment)]
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="kpis-{period}-{now:%Y%m%d-%H%M}.csv"'
    return response


# A partner's KPI table ---------------------------------------------------------------------------


@require_GET
@login_required
def partner_kpis(request, external_id: str):
    """This period, previous period, target, attainment and trend of every KPI: for staff and the partner's own users."""
    partner = _partner(request.user, external_id)
    now = timezone.now()
    period, problem = _period(request, Period.containing(now))
    table = selectors.partner_kpi_table(partner=partner, period=period, now=now)
    context = {
        "nav": "portal" if is_partner_user(request.user) else "portfolio",
        "partner": partner,
        "table": table,
        "problem": problem,
        "periods": _period_choices(now),
        "staff": not is_partner_user(request.user),
    }
    return render(request, "kpis/partner_kpis.html", context)


# Business-review summaries -----------------------------------------------------------------------


def _summary_context(request, summary) -> dict:
    return {"nav": "portfolio", "summary": summary, "partner": summary.partner, "near": int(NEAR_TARGET * 100)}


def _draft(request, external_id: str):
    partner = _partner(request.user, external_id)
    period, problem = _period(request, default_review_period())
    return review_summary(partner=partner, period=period), problem


def _recorded(request, review_id: int):
    review = get_object_or_404(
        selectors.reviews_visible_to(request.user).select_related("partner__tier", "partner__owner"), pk=review_id
    )
    try:
        period = Period.parse(review.period)
    except PeriodError:
        raise Http404("This review names no period.") from None
    return review_summary(partner=review.partner, period=period, review=review)


@require_GET
@staff_page
def review_draft(request, external_id: str):
    """The summary prepared before a review: the latest closed quarter by default, or ?period=."""
    summary, problem = _draft(request, external_id)
    context = {**_summary_context(request, summary), "problem": problem, "periods": _period_choices(timezone.now())}
    context["pdf_url"] = reverse("review-draft-pdf", args=[external_id]) + f"?period={summary.period}"
    return render(request, "kpis/review_summary.html", context)


@require_GET
@staff_page
def review_draft_pdf(request, external_id: str):
    summary, _ = _draft(request, external_id)
    return _pdf_response(request, summary)


@require_GET
@staff_page
def review_page(request, review_id: int):
    summary = _recorded(request, review_id)
    context = {**_summary_context(request, summary), "pdf_url": reverse("review-summary-pdf", args=[review_id])}
    return render(request, "kpis/review_summary.html", context)


@require_GET
@staff_page
def review_pdf(request, review_id: int):
    return _pdf_response(request, _recorded(request, review_id))


def _pdf_response(request, summary) -> HttpResponse:
    pdf = pdf_from_template("kpis/review_summary_pdf.html", _summary_context(request, summary), request=request)
    response = HttpResponse(pdf, content_type="application/pdf")
    name = f"review-{summary.partner.external_id}-{summary.period}.pdf"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# Tier review -------------------------------------------------------------------------------------


@require_GET
@staff_page
def tier_review_page(request):
    partners = visible_partners(request.user)
    mine = request.GET.get("mine") == "1"
    if mine:
        partners = partners.filter(owner=request.user)
    assessments = tier_review(partners=partners)
    groups = tier_review_groups(assessments)
    context = {
        "nav": "tiers",
        "groups": groups,
        "periods": assessments[0].periods if assessments else [],
        "grace": assessments[0].grace if assessments else None,
        "reviewed": len(assessments),
        "mine": mine,
        "can_approve": request.user.has_perm(TIER_PERMISSION),
        "tiers": list(Tier.objects.order_by("rank")),
        "labels": STATUS_LABELS,
        "recent": selectors.recent_tier_changes(partners=partners),
    }
    return render(request, "kpis/tier_review.html", context)


@require_POST
@staff_page
def tier_change(request, external_id: str):
    """Approve a tier change shown on the tier review: the only way the page changes a tier."""
    if not request.user.has_perm(TIER_PERMISSION):
        raise PermissionDenied("Only channel admins approve tier changes.")
    partner = _partner(request.user, external_id)
    raw_tier = request.POST.get("to_tier", "")
    to_tier = None
    if raw_tier:
        to_tier = Tier.objects.filter(pk=raw_tier).first() if raw_tier.isdigit() else None
        if to_tier is None:
            messages.error(request, "No such tier.")
            return HttpResponseRedirect(reverse("tier-review"))
    # What the reviewer saw is recorded with the change.
    found = tier_review(partners=Partner.objects.filter(pk=partner.pk))
    try:
        change = tier_change_approve(
            partner=partner,
            to_tier=to_tier,
            user=request.user,
            reason=request.POST.get("reason", ""),
            assessment=found[0].as_record() if found else {},
        )
    except ValidationError as exc:
        messages.error(request, f"{partner.name}: " + " ".join(exc.messages))
        return HttpResponseRedirect(reverse("tier-review"))
    target = change.to_tier.name if change.to_tier else "no tier"
    messages.success(request, f"{partner.name} moved to {target}.")
    return HttpResponseRedirect(reverse("tier-review"))
