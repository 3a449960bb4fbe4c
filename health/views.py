"""Web pages: Today, Portfolio (with CSV export), the partner page and its evidence, and the partner portal.

Views stay thin: who may see what (prm.roles), which rows (health.selectors), what changes (services).
"""

from __future__ import annotations

import csv
import datetime
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.http import require_GET, require_POST

from health import selectors
from health.alerts import alert_acknowledge
from health.calibration import latest_forecast
from kpis.periods import Period
from kpis.registry import kpi_catalogue
from kpis.selectors import partner_kpi_table
from kpis.targets import targets_for
from prm.roles import (
    admin_page,
    is_account_manager,
    is_channel_admin,
    is_partner_user,
    is_vendor_staff,
    may_write_partner,
    staff_page,
)

# Today ---------------------------------------------------------------------------------------------


@require_GET
@login_required
def today(request):
    if is_partner_user(request.user):
        return redirect("portal")
    if not is_vendor_staff(request.user):
        raise PermissionDenied("Vendor staff only.")
    own_first = is_account_manager(request.user) and not is_channel_admin(request.user)
    attention = selectors.attention_today(user=request.user, now=timezone.now(), own_first=own_first)
    return render(request, "health/today.html", {"today": attention, "nav": "today"})


# Portfolio -----------------------------------------------------------------------------------------

PORTFOLIO_FILTERS = ("search", "band", "tier", "type", "region", "owner", "status")
COLUMNS = [
    ("name", "Partner"),
    ("score", "Score"),
    ("band", "Band"),
    ("trend", "Trend"),
    ("tier", "Tier"),
    ("type", "Type"),
    ("region", "Region"),
    ("owner", "Owner"),
    ("status", "Status"),
    ("forecast", "Forecast"),
]


def _sort_columns(current: str) -> list[dict]:
    columns = []
    for key, label in COLUMNS:
        active = current.lstrip("-") == key
        descending = active and current.startswith("-")
        columns.append(
            {
                "key": key,
                "label": label,
                "active": active,
                "descending": descending,
                # A click on the sorted column reverses it; on another column sorts it ascending.
                "next": f"-{key}" if active and not descending else key,
            }
        )
    return columns


@require_GET
@staff_page
def portfolio(request):
    filterset = selectors.portfolio_filter(user=request.user, params=request.GET)
    partners = selectors.portfolio_partners(filterset)
    distribution = selectors.score_distribution(partners)
    paginator = selectors.CountedPaginator(partners, selectors.PAGE_SIZE, count=distribution.total)
    page = paginator.get_page(request.GET.get("page"))
    listed = selectors.page_partners(page)
    lines = selectors.sparklines(listed, now=timezone.now())
    rows = [{"partner": partner, "sparkline": lines.get(partner.pk, [])} for partner in listed]
    ordering = request.GET.get("ordering") or selectors.DEFAULT_ORDERING
    if filterset.form.is_valid() and filterset.form.cleaned_data.get("ordering"):
        ordering = filterset.form.cleaned_data["ordering"][0]
    # Every filter present (blank when unset): menus compare each option with it, and a missing key costs a
    # failed lookup per option.
    selected = {name: request.GET.get(name, "") for name in (*PORTFOLIO_FILTERS, "ordering")}
    context = {
        "nav": "portfolio",
        "selected": selected,
        "filterset": filterset,
        "errors": filterset.form.errors,
        "choices": selectors.portfolio_choices(),
        "bands": selectors.BANDS,
        "types": selectors.Partner.Type.choices,
        "statuses": selectors.Partner.Status.choices,
        "distribution": distribution,
        "page": page,
        "rows": rows,
        "columns": _sort_columns(ordering),
        "filtered": any(selected[name] for name in PORTFOLIO_FILTERS),
    }
    return render(request, "health/portfolio.html", context)


class _Echo:
    def write(self, value):
        return value


@require_GET
@staff_page
def portfolio_export(request):
    """The filtered portfolio as CSV, streamed: any size, constant memory, one query."""
    partners = selectors.portfolio_filter(user=request.user, params=request.GET).qs
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(selectors.CSV_HEADER)
        for row in selectors.portfolio_rows(partners):
            yield writer.writerow(row)

    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="partners-{stamp}.csv"'
    return response


# Partner page --------------------------------------------------------------------------------------


def _since(request, default: datetime.datetime) -> datetime.datetime:
    raw = request.GET.get("since") or ""
    day = parse_date(raw)
    if day is None:
        return default
    return datetime.datetime.combine(day, datetime.time.max, tzinfo=timezone.get_current_timezone())


def _evidence_link(partner, snapshot=None):
    """Links to the evidence page of each KPI: as of the snapshot when there is one, else now."""
    query = "?" + urlencode({"as_of": snapshot.as_of.isoformat()}) if snapshot is not None else ""

    def link(key: str) -> str:
        return reverse("partner-evidence", args=[partner.external_id, key]) + query

    return link


class AcknowledgeForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    follow_up = forms.CharField(
        required=False, max_length=500, label="Follow-up action", help_text="Optional: creates an action item."
    )
    due_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


@require_GET
@staff_page
def partner_page(request, external_id: str):
    partner = selectors.partner_visible(user=request.user, external_id=external_id)
    now = timezone.now()
    model = selectors.scoring_model_of(partner)
    snapshot = selectors.latest_snapshot(partner, model)
    trend_days = model.trend_days if model else 30
    default_since = now - datetime.timedelta(days=trend_days)
    since = _since(request, default_since)
    catalogue = kpi_catalogue()
    records = selectors.partner_records(partner)
    for alert in records.alerts:
        alert.words = selectors.alert_words(alert, catalogue)
    components = selectors.component_rows(
        snapshot, model, evidence_url=_evidence_link(partner, snapshot), catalogue=catalogue
    )
    context = {
        "nav": "portfolio",
        "partner": partner,
        "model": model,
        "snapshot": snapshot,
        "history": selectors.score_history(partner, model, now=now),
        "since": since.date(),
        "change": selectors.partner_change(partner, model, since=since, latest=snapshot, catalogue=catalogue),
        "components": components,
        "categories": sorted((snapshot.category_scores if snapshot else {}).items()),
        "kpis": selectors.partner_kpis(
            partner, model, as_of=now, evidence_url=_evidence_link(partner), catalogue=catalogue
        ),
        "records": records,
        "suggestions": selectors.suggested_actions(components),
        "forecast": latest_forecast(partner, model.pk if model else None),
        "acknowledge_form": AcknowledgeForm(),
        "today": now.date(),
    }
    return render(request, "health/partner.html", context)


@require_POST
@staff_page
def acknowledge(request, external_id: str, alert_id: int):
    alert = selectors.alert_for_acknowledgment(user=request.user, external_id=external_id, alert_id=alert_id)
    if not may_write_partner(request.user, alert.partner_id):
        raise PermissionDenied("You may not act on this partner's alerts.")
    form = AcknowledgeForm(request.POST)
    target = reverse("partner", args=[external_id]) + "#alerts"
    if not form.is_valid():
        messages.error(request, "The acknowledgment was not saved: " + "; ".join(form.errors.get("due_on", [])))
        return HttpResponseRedirect(target)
    follow_up = None
    if form.cleaned_data["follow_up"]:
        follow_up = {"description": form.cleaned_data["follow_up"], "due_on": form.cleaned_data["due_on"]}
    already = alert.acknowledged_at is not None
    alert_acknowledge(alert=alert, user=request.user, note=form.cleaned_data["note"], follow_up=follow_up)
    if already:
        messages.info(request, "This alert had already been acknowledged.")
    else:
        messages.success(request, f"Alert of {alert.as_of:%Y-%m-%d} acknowledged.")
    return HttpResponseRedirect(target)


@require_GET
@login_required
def evidence(request, external_id: str, kpi: str):
    """The records behind one KPI of a partner, as its evidence link selects them (staff and own partner)."""
    partner = selectors.partner_visible(user=request.user, external_id=external_id)
    model = selectors.scoring_model_of(partner)
    as_of = parse_datetime(request.GET.get("as_of") or "")
    if as_of is None or timezone.is_naive(as_of):
        as_of = timezone.now()
    window_days = model.window_days if model else 90
    found = selectors.kpi_evidence(user=request.user, partner=partner, key=kpi, as_of=as_of, window_days=window_days)
    if found is None:
        raise Http404("This KPI has no evidence list.")
    context = {
        "nav": "portal" if is_partner_user(request.user) else "portfolio",
        "partner": partner,
        "evidence": found,
        "as_of": as_of,
        "window_days": window_days,
        "back": reverse("portal") if is_partner_user(request.user) else reverse("partner", args=[external_id]),
    }
    return render(request, "health/evidence.html", context)


# Partner portal ------------------------------------------------------------------------------------


@require_GET
@login_required
def portal(request):
    if not is_partner_user(request.user):
        return redirect("today")
    partner = selectors.partner_of_user(request.user)
    if partner is None:
        raise Http404("No partner.")
    now = timezone.now()
    model = selectors.scoring_model_of(partner)
    snapshot = selectors.latest_snapshot(partner, model)
    components = selectors.component_rows(snapshot, model, evidence_url=_evidence_link(partner, snapshot))
    # The portal shows the KPIs the partner is measured against this quarter; its KPI page has the catalogue.
    quarter = Period.containing(now)
    targeted = targets_for(period=quarter, keys=kpi_catalogue(), partner_tiers={partner.pk: partner.tier_id})
    keys = list(targeted.get(partner.pk, {}))
    context = {
        "nav": "portal",
        "quarter": quarter,
        "kpi_table": partner_kpi_table(partner=partner, period=quarter, keys=keys, now=now) if keys else None,
        "partner": partner,
        "model": model,
        "snapshot": snapshot,
        "history": selectors.score_history(partner, model, now=now),
        "components": components,
        "categories": sorted((snapshot.category_scores if snapshot else {}).items()),
        "next_band": selectors.next_band(snapshot, model, components),
    }
    return render(request, "health/portal.html", context)


# Calibration ---------------------------------------------------------------------------------------


def _calibration_model(request):
    from health.models import ScoringModel

    models = list(ScoringModel.objects.order_by("-is_active", "priority", "id"))
    raw = request.GET.get("model") or request.POST.get("model") or ""
    chosen = next((m for m in models if raw.isdigit() and m.pk == int(raw)), None)
    if raw and chosen is None:
        raise Http404("No such scoring model.")
    return (chosen or (models[0] if models else None)), models


@require_GET
@admin_page
def calibration(request):
    """The latest calibration report of a model (or one of its past reports), with charts and history."""
    from health.calibration import calibration_reports
    from health.models import CalibrationReport

    model, models = _calibration_model(request)
    history = calibration_reports(model) if model else []
    report = None
    raw = request.GET.get("report") or ""
    if raw:
        report = CalibrationReport.objects.filter(pk=int(raw) if raw.isdigit() else 0, model=model).first()
        if report is None:
            raise Http404("No such report.")
    elif history:
        report = CalibrationReport.objects.get(pk=history[0].pk)
    context = {
        "nav": "calibration",
        "model": model,
        "models": models,
        "report": report,
        "results": report.results if report else {},
        "history": history,
    }
    return render(request, "health/calibration.html", context)


@require_POST
@admin_page
def calibration_regenerate(request):
    """Queue a new report of the model now; it appears in the history when the worker is done."""
    from django.db import transaction

    from health.tasks import calibrate_models

    model, _ = _calibration_model(request)
    if model is None:
        raise Http404("No scoring model.")
    kwargs = {"model_id": model.pk, "user_id": request.user.pk, "trigger": "page"}
    transaction.on_commit(lambda: calibrate_models.delay(**kwargs))
    messages.success(request, f"A new calibration of “{model.name}” is queued; reload in a minute or two.")
    return HttpResponseRedirect(reverse("calibration") + "?" + urlencode({"model": model.pk}))


@require_POST
@admin_page
def calibration_apply(request, report_id: int):
    """Open the model's admin form with the report's suggested weights filled in: preview, then save (audited)."""
    from health.models import CalibrationReport

    report = CalibrationReport.objects.filter(pk=report_id).only("id", "model_id", "results").first()
    if report is None:
        raise Http404("No such report.")
    if (report.results.get("weights") or {}).get("status") != "fitted":
        messages.error(request, "This report has no suggested weights to apply.")
        return HttpResponseRedirect(reverse("calibration") + "?" + urlencode({"model": report.model_id}))
    target = reverse("admin:health_scoringmodel_change", args=[report.model_id])
    return HttpResponseRedirect(target + "?" + urlencode({"calibration": report.pk}), status=303)
