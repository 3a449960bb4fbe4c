"""CSV import: the import_* commands and prm.importing (all or nothing, errors by physical line and column)."""

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from prm.importing import ImportInvalid, import_csv
from prm.models import Activity, Certification, Contact, Deal, Partner
from tests.factories import TierFactory

DATA = Path(__file__).parent / "data"

ACTIVITY_HEADER = "partner,kind,occurred_at,quantity,value,source,external_id,contact_email,metadata\n"


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(command: str, *args: str) -> tuple[CommandError, str]:
    err = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command(command, *args, stdout=StringIO(), stderr=err)
    return failure.value, err.getvalue()


def counts() -> dict[str, int]:
    return {
        "partners": Partner.objects.count(),
        "activities": Activity.objects.count(),
        "deals": Deal.objects.count(),
        "certifications": Certification.objects.count(),
        "contacts": Contact.objects.count(),
    }


@pytest.fixture
def gold(db):
    return TierFactory(slug="gold", name="Gold", rank=3)


# Good files, then the same file again -------------------------------------------------------------


@pytest.mark.django_db
def test_import_partners_then_again(gold, manager):
    out, err = run("import_partners", str(DATA / "partners.csv"))
    assert "3 rows read; created 3, updated 0, unchanged 0" in out
    assert err == ""  # no progress bar in captured output
    acme = Partner.objects.get(external_id="P-100")
    assert (acme.name, acme.type, acme.tier, acme.owner, acme.region) == (
        "Acme Channel",
        "reseller",
        gold,
        manager,
        "EMEA",
    )
    assert acme.quarterly_revenue_target == Decimal("250000")
    assert str(acme.agreement_end) == "2026-12-31"
    cloud = Partner.objects.get(external_id="P-102")
    assert cloud.name == "Cloud, Inc."
    bolt = Partner.objects.get(external_id="P-101")
    assert (bolt.tier, bolt.owner, bolt.status) == (None, None, "onboarding")
    history_rows = Partner.history.count()

    out, _ = run("import_partners", str(DATA / "partners.csv"))
    assert "created 0, updated 0, unchanged 3; nothing new" in out
    assert Partner.objects.count() == 3
    assert Partner.history.count() == history_rows


@pytest.mark.django_db
def test_import_partners_with_bom_and_crlf():
    out, _ = run("import_partners", str(DATA / "partners_bom.csv"))
    assert "created 2" in out
    # Without utf-8-sig the first column would be "\ufeffexternal_id" and the header refused.
    assert set(Partner.objects.values_list("external_id", "name")) == {
        ("P-200", "Ümlaut GmbH"),
        ("P-201", "Café Société"),
    }


@pytest.mark.django_db
def test_import_activities_then_again(partner_a, partner_b):
    out, _ = run("import_activities", str(DATA / "activities.csv"))
    assert "4 rows read; created 4, duplicates 0" in out
    login = Activity.objects.get(source="crm", external_id="evt-1")
    assert (login.partner, login.kind_id, login.quantity, login.value) == (partner_a, login.kind.id, 3, None)
    assert login.kind.key == "portal_login"
    mdf = Activity.objects.select_related("contact").get(external_id="evt-2")
    assert mdf.value == Decimal("1500.00")
    assert mdf.metadata == {"campaign": "Q4"}
    assert mdf.contact.email == "ann@alpha.example"
    assert mdf.occurred_at.isoformat() == "2026-10-02T08:00:00+00:00"
    # Same external_id from another source is another event.
    assert Activity.objects.get(source="survey", external_id="evt-1").partner == partner_b

    out, _ = run("import_activities", str(DATA / "activities.csv"))
    assert "created 0, duplicates 4; nothing new" in out
    assert Activity.objects.count() == 4


@pytest.mark.django_db
def test_import_deals_then_again_then_changed(partner_a, partner_b, tmp_path):
    out, _ = run("import_deals", str(DATA / "deals.csv"))
    assert "created 3, updated 0, unchanged 0" in out
    won = Deal.objects.get(external_id="D-101")
    assert (won.partner, won.amount, won.stage) == (partner_a, Decimal("30000"), "won")
    assert won.closed_at.isoformat() == "2026-09-15T00:00:00+00:00"
    assert Deal.objects.get(external_id="D-100").closed_at is None

    out, _ = run("import_deals", str(DATA / "deals.csv"))
    assert "created 0, updated 0, unchanged 3; nothing new" in out

    changed = (
        (DATA / "deals.csv")
        .read_text()
        .replace(
            "D-100,P-A,Alpha renewal,12000.00,registered,2026-09-01T00:00:00Z,",
            "D-100,P-A,Alpha renewal,12000.00,won,2026-09-01T00:00:00Z,2026-10-01T00:00:00Z",
        )
    )
    (tmp_path / "deals.csv").write_text(changed)
    out, _ = run("import_deals", str(tmp_path / "deals.csv"))
    assert "created 0, updated 1, unchanged 2" in out
    assert Deal.objects.get(external_id="D-100").stage == "won"


@pytest.mark.django_db
def test_import_certifications_then_again(partner_a, partner_b):
    out, _ = run("import_certifications", str(DATA / "certifications.csv"))
    assert "created 3, updated 0, unchanged 0" in out
    sales = Certification.objects.select_related("contact").get(name="Sales Professional")
    assert (sales.partner, sales.role, str(sales.expires_on)) == (partner_a, "sales", "2027-01-10")
    assert sales.contact.email == "ann@alpha.example"
    assert Certification.objects.get(name="Technical Expert").contact is None

    out, _ = run("import_certifications", str(DATA / "certifications.csv"))
    assert "created 0, updated 0, unchanged 3; nothing new" in out
    assert Certification.objects.count() == 3


# Bad files: every error, with its line and column, and nothing written ---------------------------------


@pytest.mark.django_db
def test_bad_activities_file_reports_every_error_and_writes_nothing(partner_a, partner_b):
    before = counts()
    failure, err = run_failing("import_activities", str(DATA / "activities_bad.csv"))
    assert "2 error(s)" in str(failure) and "nothing was written" in str(failure)
    assert failure.returncode == 1
    lines = err.splitlines()
    assert lines == [
        "line 3, column kind: Unknown activity kind 'teleport'.",
        lines[1],
    ]
    assert lines[1].startswith("line 5, column occurred_at: ")
    assert counts() == before


@pytest.mark.django_db
def test_bad_partner_deal_and_certification_files(partner_a, partner_b):
    before = counts()
    _, err = run_failing("import_partners", str(DATA / "partners_bad.csv"))
    assert err.splitlines()[0].startswith("line 3, column external_id: ")
    assert "line 4, column type: " in err
    assert "line 4, column quarterly_revenue_target: " in err

    _, err = run_failing("import_deals", str(DATA / "deals_bad.csv"))
    assert err.splitlines() == [
        "line 3, column partner: Unknown partner 'P-NOPE'.",
        "line 4, column closed_at: Required when the stage is won.",
    ]

    _, err = run_failing("import_certifications", str(DATA / "certifications_bad.csv"))
    assert err.splitlines()[0] == "line 2, column expires_on: Must be after earned_on."
    assert "line 3, column role: " in err
    assert "line 4, column contact_email: " in err
    assert counts() == before


@pytest.mark.django_db
def test_embedded_newline_shifts_the_line_number(partner_a):
    _, err = run_failing("import_activities", str(DATA / "activities_multiline.csv"))
    # The first row spans lines 2 and 3; the bad row is the file's fourth line.
    assert err.splitlines() == ["line 4, column quantity: Ensure this value is greater than or equal to 1."]
    assert Activity.objects.count() == 0

    fixed = (DATA / "activities_multiline.csv").read_bytes().replace(b",0,,crm,ml-2", b",2,,crm,ml-2")
    assert import_csv("activities", fixed).counts == {"created": 2, "duplicates": 0}
    assert Activity.objects.get(external_id="ml-1").metadata == {"note": "first line\nsecond line"}


@pytest.mark.django_db
def test_header_errors_are_one_clear_error(partner_a):
    data = b"partner,kind,when,source,colour\nP-A,portal_login,2026-10-01T00:00:00Z,crm,red\n"
    with pytest.raises(ImportInvalid) as refused:
        import_csv("activities", data)
    assert len(refused.value.errors) == 1
    message = str(refused.value.errors[0])
    assert message.startswith("line 1: Bad header: unknown column(s) 'when', 'colour'")
    assert "missing required column(s) occurred_at, external_id" in message


@pytest.mark.django_db
def test_cell_level_errors(partner_a):
    data = (
        ACTIVITY_HEADER
        + "P-A,portal_login,2026-10-01T00:00:00Z,1,,crm,c-1,,{not json}\n"
        + "P-A,portal_login,2026-10-01T00:00:00Z,1,,crm,c-2\n"
        + "\n"  # blank lines are skipped, not errors
        + "P-A,portal_login,2026-10-01T00:00:00Z,1,,crm,c-3,,\n"
    ).encode() + b"P-A,portal_login,2026-10-01T00:00:00Z,1,,crm,caf\xe9,,\n"
    with pytest.raises(ImportInvalid) as refused:
        import_csv("activities", data)
    errors = [str(error) for error in refused.value.errors]
    assert errors[0].startswith("line 2, column metadata: Not valid JSON")
    assert errors[1] == "line 3: Expected 9 cells as in the header, found 7."
    assert errors[2].startswith("line 6: Not UTF-8 text (byte 0xe9)")
    assert len(errors) == 3
    assert Activity.objects.count() == 0


@pytest.mark.django_db
def test_empty_and_header_only_files():
    with pytest.raises(ImportInvalid) as refused:
        import_csv("deals", b"")
    assert str(refused.value.errors[0]).startswith("line 1: The file is empty.")
    with pytest.raises(ImportInvalid) as refused:
        import_csv("deals", b"external_id,partner,name,amount,stage,registered_at\n")
    assert str(refused.value.errors[0]) == "line 2: The file has no data rows after the header."


# Chunks: a file longer than one validate_batch call ---------------------------------------------------


def activity_rows(start: int, stop: int, partner: str = "P-A") -> str:
    return "".join(f"{partner},portal_login,2026-10-01T00:00:00Z,1,,crm,e-{n},,\n" for n in range(start, stop))


@pytest.mark.django_db
def test_chunks_are_one_transaction(partner_a):
    # Chunks 1 and 2 are valid (and written inside the transaction); chunk 3 has an error: nothing stays.
    data = (ACTIVITY_HEADER + activity_rows(0, 4) + "P-A,portal_login,yesterday,1,,crm,e-x,,\n").encode()
    with pytest.raises(ImportInvalid) as refused:
        import_csv("activities", data, chunk_size=2)
    assert [error.line for error in refused.value.errors] == [6]
    assert Activity.objects.count() == 0

    result = import_csv("activities", (ACTIVITY_HEADER + activity_rows(0, 7)).encode(), chunk_size=2)
    assert (result.rows, result.counts) == (7, {"created": 7, "duplicates": 0})
    assert Activity.objects.count() == 7


@pytest.mark.django_db
def test_errors_of_every_chunk_are_collected(partner_a):
    rows = activity_rows(0, 2) + "P-A,nope,2026-10-01T00:00:00Z,1,,crm,x-1,,\n" + activity_rows(2, 5)
    rows += "P-A,portal_login,2026-10-01T00:00:00Z,0,,crm,x-2,,\n"
    with pytest.raises(ImportInvalid) as refused:
        import_csv("activities", (ACTIVITY_HEADER + rows).encode(), chunk_size=2)
    assert [(error.line, error.column) for error in refused.value.errors] == [(4, "kind"), (8, "quantity")]


@pytest.mark.django_db
def test_duplicates_across_chunks_are_errors(partner_a):
    rows = activity_rows(0, 3) + "P-A,portal_login,2026-10-02T00:00:00Z,1,,crm,e-0,,\n"
    with pytest.raises(ImportInvalid) as refused:
        import_csv("activities", (ACTIVITY_HEADER + rows).encode(), chunk_size=2)
    assert [str(error) for error in refused.value.errors] == [
        "line 5, column external_id: Same source, external_id as line 2 (crm, e-0)."
    ]
    assert Activity.objects.count() == 0


@pytest.mark.django_db
def test_more_rows_than_the_api_cap(partner_a, settings):
    settings.API_MAX_LIST_ITEMS = 5  # the API's cap; a file may be longer and is validated in chunks of it
    result = import_csv("activities", (ACTIVITY_HEADER + activity_rows(0, 12)).encode())
    assert result.counts == {"created": 12, "duplicates": 0}


@pytest.mark.django_db
def test_dry_run_counts_and_writes_nothing(partner_a, partner_b):
    result = import_csv("activities", (DATA / "activities.csv").read_bytes(), dry_run=True)
    assert result.dry_run and result.counts == {"created": 4, "duplicates": 0}
    assert result.summary().startswith("dry run, nothing written: ")
    assert Activity.objects.count() == 0 and Contact.objects.count() == 0
    out, _ = run("import_activities", str(DATA / "activities.csv"), "--dry-run")
    assert "created 4" in out and Activity.objects.count() == 0


# Command line details ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_progress_bar_only_when_asked(partner_a, partner_b):
    _, err = run("import_activities", str(DATA / "activities.csv"))
    assert err == ""
    Activity.objects.all().delete()
    _, err = run("import_activities", str(DATA / "activities.csv"), "--progress")
    assert "import activities" in err and "5/5" in err  # header + 4 rows, counted in physical lines


@pytest.mark.django_db
def test_missing_file_is_a_command_error():
    failure, _ = run_failing("import_deals", str(DATA / "no-such-file.csv"))
    assert "No such file" in str(failure)
