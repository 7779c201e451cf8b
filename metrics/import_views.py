"""Metric import pages: the list with the upload form, one batch (live progress, rejected
rows) and its rejected rows as CSV.

Views parse, check, call one service or selector, and render. Another user's batch answers
404 (RevOps and Admins see every batch).
"""

import csv

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.core.paginator import Paginator
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from agents.forms import add_service_errors
from metrics import import_selectors as selectors
from metrics.import_forms import ImportUploadForm
from metrics.import_services import batch_upload, import_max_bytes, may_import, size_message
from portal import audit

BATCHES_PER_PAGE = 25
ERRORS_PER_PAGE = 50


class _SizeLimit(FileUploadHandler):
    """Stops receiving an upload as soon as it passes the limit (the rest of the request is
    read and dropped), instead of writing a huge file to disk first."""

    def __init__(self, request=None):
        super().__init__(request)
        self.received, self.limit = 0, import_max_bytes()

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.request.import_too_big = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size):
        return None


@csrf_exempt  # the size limit must be in place before the CSRF check reads the body
def import_list(request):
    request.upload_handlers.insert(0, _SizeLimit(request))
    return _import_list(request)


@csrf_protect
def _import_list(request):
    may_upload = may_import(request.user)
    form = ImportUploadForm()
    if request.method == "POST":
        if not may_upload:
            raise PermissionDenied("You may not import metrics: it takes the right to change "
                                   "an agent (its owners and Admins have it) or the RevOps role.")
        form = ImportUploadForm(request.POST, request.FILES)
        if getattr(request, "import_too_big", False):  # _SizeLimit stopped the upload
            form.is_valid()
            form.errors.pop("file", None)
            form.add_error("file", size_message())
        elif form.is_valid():
            try:
                batch = batch_upload(actor=request.user, upload=form.cleaned_data["file"],
                                     fmt=form.cleaned_data["format"])
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                if batch.status == batch.Status.DUPLICATE:
                    messages.warning(request, "This file was imported already: nothing new "
                                              "was imported.")
                else:
                    messages.success(request, f"{batch} is queued for import.")
                return redirect("imports:detail", public_id=batch.public_id)
    page = Paginator(selectors.batch_list(user=request.user),
                     BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "metrics/import_list.html", {
        "form": form, "may_upload": may_upload, "page": page,
        "sees_all": selectors.sees_every_import(request.user)},
        status=400 if form.errors else 200)


def import_detail(request, public_id):
    batch = selectors.batch_for_user(user=request.user, public_id=public_id)
    if request.htmx:  # the progress poll
        response = render(request, "metrics/import_detail.html#progress", {"batch": batch})
        if batch.finished:
            response["HX-Refresh"] = "true"  # once: the whole page, with the rejected rows
        return response
    errors = Paginator(selectors.batch_errors(batch), ERRORS_PER_PAGE).get_page(
        request.GET.get("page"))
    return render(request, "metrics/import_detail.html", {"batch": batch, "page": errors})


def _cell(value) -> str:
    """Keep a spreadsheet from reading a cell as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value):
        return value


def import_errors_csv(request, public_id) -> HttpResponse:
    batch = selectors.batch_for_user(user=request.user, public_id=public_id)
    audit.record_read(request=request, verb="export.downloaded", obj=batch,
                      data={"export": "import_errors", "file": batch.original_name})
    writer = csv.writer(_Echo())
    rows = selectors.batch_errors(batch).values_list("row", "column", "message")

    def lines():
        yield writer.writerow(["row", "column", "message"])
        for row, column, message in rows.iterator(chunk_size=2000):
            yield writer.writerow([row, _cell(column), _cell(message)])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="import-{batch.public_id}-errors.csv"')
    return response
