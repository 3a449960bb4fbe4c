"""The admin's "Import CSV" page for a model: upload, a dry run showing every error or a preview, then confirm.

Both steps run prm.importing, the code path of the import commands. Between them the upload waits in
VAR_DIR/imports under a random token that only the session which uploaded it may confirm or cancel.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from prm.importing import SPECS, ImportInvalid, import_csv
from prm.roles import visible_partners

SESSION_KEY = "prm_csv_imports"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
# Uploads never confirmed nor cancelled (a closed tab) are removed by a later upload after this long.
STALE_AFTER_SECONDS = 24 * 3600


class CsvUploadForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="UTF-8 (with or without BOM); the first line names the columns.")


def imports_dir() -> Path:
    directory = Path(settings.VAR_DIR) / "imports"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _sweep_stale(directory: Path) -> None:
    cutoff = time.time() - STALE_AFTER_SECONDS
    for stale in directory.glob("*.csv"):
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except FileNotFoundError:  # another request swept it first
            pass


class CsvImportAdminMixin:
    """Adds an "Import CSV" button to a ModelAdmin's changelist and the upload/preview/confirm page behind it.

    Set `import_kind` to a key of prm.importing.SPECS. Only users with the model's add permission may import.
    """

    import_kind: str
    change_list_template = "admin/prm/change_list_import.html"
    import_template = "admin/prm/import.html"

    def get_urls(self):
        opts = self.model._meta
        # Before the admin's own patterns, whose "<object_id>/" would otherwise take "import/".
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name=f"{opts.app_label}_{opts.model_name}_import",
            )
        ] + super().get_urls()

    # The pending upload of this session ------------------------------------------------------------

    def _remember(self, request: HttpRequest, token: str) -> None:
        pending = request.session.get(SESSION_KEY, {})
        pending[token] = self.model._meta.label
        request.session[SESSION_KEY] = pending

    def _forget(self, request: HttpRequest, token: str) -> None:
        pending = request.session.get(SESSION_KEY, {})
        if pending.pop(token, None) is not None:
            request.session[SESSION_KEY] = pending
        (imports_dir() / f"{token}.csv").unlink(missing_ok=True)

    def _pending_path(self, request: HttpRequest, token: str) -> Path | None:
        """The upload's file if `token` is one this session uploaded for this model and it is still there."""
        if not TOKEN_RE.match(token) or request.session.get(SESSION_KEY, {}).get(token) != self.model._meta.label:
            return None
        upload = imports_dir() / f"{token}.csv"
        return upload if upload.is_file() else None

    def _store(self, request: HttpRequest, upload) -> tuple[str, Path]:
        directory = imports_dir()
        _sweep_stale(directory)
        token = secrets.token_urlsafe(32)
        stored = directory / f"{token}.csv"
        with open(stored, "wb") as destination:
            for block in upload.chunks():
                destination.write(block)
        self._remember(request, token)
        return token, stored

    @staticmethod
    def _partners(request: HttpRequest):
        """The partners this user's rows may refer to: the program's one scoping rule, as everywhere."""
        return visible_partners(request.user)

    # The page --------------------------------------------------------------------------------------

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        opts = self.model._meta
        changelist_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        import_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_import")
        spec = SPECS[self.import_kind]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import {opts.verbose_name_plural} from CSV",
            "opts": opts,
            "columns": spec.columns,
            "required_columns": spec.required_columns,
            "changelist_url": changelist_url,
            "form": CsvUploadForm(),
        }

        if request.method == "POST" and ("confirm" in request.POST or "cancel" in request.POST):
            token = request.POST.get("token", "")
            stored = self._pending_path(request, token)
            if stored is None:
                messages.error(request, "That upload is no longer waiting for confirmation; upload the file again.")
                return redirect(import_url)
            if "cancel" in request.POST:
                self._forget(request, token)
                messages.info(request, "Import cancelled; nothing was written.")
                return redirect(changelist_url)
            try:
                result = import_csv(self.import_kind, stored, partners_queryset=self._partners(request))
            except ImportInvalid as exc:
                # The data changed since the dry run (e.g. a partner was deleted): show why, as for an upload.
                context["errors"] = exc.errors
                return TemplateResponse(request, self.import_template, context)
            finally:
                self._forget(request, token)
            messages.success(request, f"Imported {result.summary()}.")
            return redirect(changelist_url)

        if request.method == "POST":
            form = CsvUploadForm(request.POST, request.FILES)
            context["form"] = form
            if form.is_valid():
                token, stored = self._store(request, form.cleaned_data["file"])
                try:
                    context["result"] = import_csv(
                        self.import_kind, stored, dry_run=True, partners_queryset=self._partners(request)
                    )
                    context["token"] = token
                except ImportInvalid as exc:
                    self._forget(request, token)
                    context["errors"] = exc.errors
        return TemplateResponse(request, self.import_template, context)
