"""CSV import of partners, activities, deals and certifications: validated as the API validates, written all or nothing.

One code path serves the `import_*` commands and the admin's "Import CSV" page. A file's header row names
API fields (API.md); an empty cell means "not given". Rows are validated in chunks by prm.inputs.validate_batch
(the API's serializers), every error is collected with the file's physical line number, and the writes go
through prm.services inside one transaction, so a bad file writes nothing even when it spans many chunks.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import QuerySet

from prm import services
from prm.inputs import (
    ActivityInput,
    BatchInvalid,
    CertificationInput,
    DealInput,
    PartnerInput,
    validate_batch,
)

Source = bytes | str | os.PathLike | BinaryIO


@dataclass(frozen=True)
class ImportSpec:
    """What one kind of file holds, how its rows are validated and which service writes them."""

    kind: str
    serializer_class: type
    columns: tuple[str, ...]
    key_fields: tuple[str, ...]
    write: Callable[..., services.IngestResult | services.UpsertResult]
    json_columns: frozenset[str] = frozenset()

    @property
    def required_columns(self) -> tuple[str, ...]:
        # The serializer is the one source of truth of what a row must give.
        declared = self.serializer_class._declared_fields
        return tuple(name for name in self.columns if declared[name].required)


SPECS: dict[str, ImportSpec] = {
    spec.kind: spec
    for spec in (
        ImportSpec(
            kind="partners",
            serializer_class=PartnerInput,
            columns=tuple(PartnerInput._declared_fields),
            key_fields=("external_id",),
            write=services.partners_upsert,
        ),
        ImportSpec(
            kind="activities",
            serializer_class=ActivityInput,
            columns=tuple(ActivityInput._declared_fields),
            key_fields=("source", "external_id"),
            write=services.activities_ingest,
            json_columns=frozenset({"metadata"}),
        ),
        ImportSpec(
            kind="deals",
            serializer_class=DealInput,
            columns=tuple(DealInput._declared_fields),
            key_fields=("external_id",),
            write=services.deals_upsert,
        ),
        ImportSpec(
            kind="certifications",
            serializer_class=CertificationInput,
            columns=tuple(CertificationInput._declared_fields),
            key_fields=("partner", "name", "role", "earned_on", "contact_email"),
            write=services.certifications_upsert,
        ),
    )
}


@dataclass(frozen=True)
class LineError:
    """One reason a file was refused, located by physical line (the header is line 1) and column."""

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}" if self.column else f"line {self.line}"
        return f"{where}: {self.message}"


class ImportInvalid(Exception):
    """The file had at least one error; nothing of it was written."""

    def __init__(self, errors: Iterable[LineError]):
        self.errors = sorted(errors, key=lambda error: error.line)
        super().__init__(f"{len(self.errors)} error(s); nothing was written")


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote (or, in a dry run, would have written)."""

    kind: str
    rows: int
    counts: dict[str, int]  # created/duplicates for events, created/updated/unchanged for records
    dry_run: bool = False

    @property
    def wrote_anything(self) -> bool:
        return bool(self.counts.get("created") or self.counts.get("updated"))

    def summary(self) -> str:
        counts = ", ".join(f"{name} {number}" for name, number in self.counts.items())
        text = f"{self.kind}: {self.rows} rows read; {counts}"
        if not self.wrote_anything:
            text += "; nothing new"
        if self.dry_run:
            text = f"dry run, nothing written: {text}"
        return text


class _DryRunDone(Exception):
    """Raised inside the import's transaction to roll a dry run back."""


@contextmanager
def _binary(source: Source) -> Iterator[BinaryIO]:
    if isinstance(source, bytes | bytearray):
        yield io.BytesIO(source)
    elif hasattr(source, "read"):
        yield source
    else:
        with open(source, "rb") as stream:
            yield stream


def _decoded_lines(stream: BinaryIO, errors: list[LineError]) -> Iterator[str]:
    """The file's lines as text, decoded one by one so that a bad byte is reported on its own line."""
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(
                LineError(number, None, f"Not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as CSV UTF-8.")
            )
            # Go on with the damaged line so that the file's other errors are found too.
            yield raw.decode("utf-8", errors="replace")


def _read_header(reader, spec: ImportSpec) -> list[str]:
    header = next(reader, None)
    expected = f"Expected the columns {', '.join(spec.columns)} (required: {', '.join(spec.required_columns)})."
    if header is None:
        raise ImportInvalid([LineError(1, None, f"The file is empty. {expected}")])
    names = [cell.strip() for cell in header]
    while names and not names[-1]:  # spreadsheets may export trailing empty columns
        names.pop()
    unknown = [name for name in names if name not in spec.columns]
    missing = [name for name in spec.required_columns if name not in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    problems = []
    if unknown:
        problems.append("unknown column(s) " + ", ".join(repr(name) for name in unknown))
    if missing:
        problems.append("missing required column(s) " + ", ".join(missing))
    if repeated:
        problems.append("repeated column(s) " + ", ".join(repeated))
    if problems:
        raise ImportInvalid([LineError(1, None, f"Bad header: {'; '.join(problems)}. {expected}")])
    return names


def _items(reader, spec: ImportSpec, columns: list[str], errors: list[LineError]) -> Iterator[tuple[int, dict]]:
    """(line, item) for each data row; the line is where the row starts, even if a quoted cell spans lines."""
    width = len(columns)
    end_of_previous = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader cannot find where the next row starts, so nothing after this point can be trusted.
            errors.append(LineError(end_of_previous + 1, None, f"Malformed CSV: {exc}."))
            return
        line, end_of_previous = end_of_previous + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < width or any(cell.strip() for cell in row[width:]):
            errors.append(LineError(line, None, f"Expected {width} cells as in the header, found {len(row)}."))
            continue
        item: dict = {}
        for name, cell in zip(columns, row, strict=False):
            cell = cell.strip()
            if not cell:
                continue
            if name in spec.json_columns:
                try:
                    # strict=False: a note typed in a spreadsheet cell may hold a line break inside a string.
                    item[name] = json.loads(cell, strict=False)
                except ValueError as exc:
                    errors.append(LineError(line, name, f'Not valid JSON ({exc}); give an object like {{"a": 1}}.'))
                continue
            item[name] = cell
        yield line, item


def _column_of(field_name: str) -> str | None:
    # Nested errors (metadata.x) belong to their cell; "-" marks an error of the whole row.
    return None if field_name == "-" else field_name.split(".", 1)[0]


def _validate_and_write(
    spec: ImportSpec,
    chunk: list[dict],
    lines: list[int],
    errors: list[LineError],
    counts: dict[str, int],
    partners_queryset: QuerySet | None,
) -> None:
    try:
        cleaned = validate_batch(
            spec.serializer_class,
            chunk,
            key_fields=spec.key_fields,
            partners_queryset=partners_queryset,
            max_items=len(chunk),
        )
    except BatchInvalid as exc:
        errors.extend(
            LineError(lines[error.index] if error.index >= 0 else lines[0], _column_of(error.field), error.message)
            for error in exc.errors
        )
        return
    if errors:
        # The file is refused already: keep validating to report every error, but write no more.
        return
    for name, number in spec.write(items=cleaned).as_dict().items():
        counts[name] = counts.get(name, 0) + number


def import_csv(
    kind: str,
    source: Source,
    *,
    dry_run: bool = False,
    chunk_size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    partners_queryset: QuerySet | None = None,
) -> ImportResult:
    """Import a CSV file (bytes, a path or a binary file) of `kind` ("partners", "activities", ...).

    Raises ImportInvalid with every error found, having written nothing. A dry run validates and
    writes inside a transaction that it rolls back, so its counts are exactly what a real run would
    write now. `on_progress` is called with the number of physical lines read so far.
    `partners_queryset` limits the partners rows may refer to (the importing user's scope); others are unknown.
    """
    spec = SPECS[kind]
    chunk_size = chunk_size or settings.API_MAX_LIST_ITEMS
    errors: list[LineError] = []
    counts: dict[str, int] = {}
    rows = 0
    try:
        with _binary(source) as stream, transaction.atomic():
            reader = csv.reader(_decoded_lines(stream, errors), strict=True)
            try:
                columns = _read_header(reader, spec)
            except csv.Error as exc:
                raise ImportInvalid([LineError(1, None, f"Malformed CSV: {exc}.")]) from exc
            first_line_of: dict[tuple, int] = {}
            chunk: list[dict] = []
            chunk_lines: list[int] = []
            for line, item in _items(reader, spec, columns, errors):
                rows += 1
                # Same identity rule as validate_batch, but across the whole file rather than one chunk.
                key = tuple(str(item.get(name)) for name in spec.key_fields)
                if key in first_line_of:
                    errors.append(
                        LineError(
                            line,
                            spec.key_fields[-1],
                            f"Same {', '.join(spec.key_fields)} as line {first_line_of[key]} ({', '.join(key)}).",
                        )
                    )
                    continue
                first_line_of[key] = line
                chunk.append(item)
                chunk_lines.append(line)
                if len(chunk) >= chunk_size:
                    _validate_and_write(spec, chunk, chunk_lines, errors, counts, partners_queryset)
                    chunk, chunk_lines = [], []
                    if on_progress:
                        on_progress(reader.line_num)
            if chunk:
                _validate_and_write(spec, chunk, chunk_lines, errors, counts, partners_queryset)
            if on_progress:
                on_progress(reader.line_num)
            if not rows and not errors:
                errors.append(LineError(2, None, "The file has no data rows after the header."))
            if errors:
                raise ImportInvalid(errors)
            result = ImportResult(kind=kind, rows=rows, counts=counts, dry_run=dry_run)
            if dry_run:
                raise _DryRunDone
    except _DryRunDone:
        pass
    return result


def physical_lines(path: str | os.PathLike) -> int:
    """Number of lines of a file, read in blocks: the total of a progress bar fed with line numbers."""
    lines, last = 0, b"\n"
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


class ImportCommand(BaseCommand):
    """Base of the `import_<kind> FILE` commands: all or nothing, every error on stderr with its line."""

    kind: str

    @property
    def help(self) -> str:
        spec = SPECS[self.kind]
        return (
            f"Import {self.kind} from a UTF-8 CSV file whose header names API fields: {', '.join(spec.columns)} "
            f"(required: {', '.join(spec.required_columns)}). A file with any error writes nothing."
        )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the CSV file.")
        parser.add_argument(
            "--progress", action="store_true", help="Show a progress bar even when stdout is not a terminal."
        )
        parser.add_argument("--dry-run", action="store_true", help="Validate and count, write nothing.")

    def handle(self, *args, **options):
        from tqdm import tqdm

        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        show_progress = options["progress"] or self.stdout.isatty()
        # The bar draws itself with carriage returns, so it needs the raw stream, not the line-ending wrapper.
        bar_stream = getattr(self.stderr, "_out", sys.stderr)
        with tqdm(
            total=physical_lines(path) if show_progress else None,
            unit=" lines",
            desc=f"import {self.kind}",
            file=bar_stream,
            disable=not show_progress,
        ) as bar:
            try:
                result = import_csv(
                    self.kind, path, dry_run=options["dry_run"], on_progress=lambda line: bar.update(line - bar.n)
                )
            except ImportInvalid as exc:
                bar.close()
                for error in exc.errors:
                    self.stderr.write(str(error))
                raise CommandError(f"{len(exc.errors)} error(s) in {path}; nothing was written.") from None
        self.stdout.write(result.summary())
