"""The curl examples of docs/api.md, run as written against the app: every one answers, and as documented.

Each command line is read with shlex (as the shell would split it) and its curl options (-X, -H, -d, -G,
--data-urlencode) are sent through Django's test client, so the test needs no curl and no network. A
`# {...}` line after a command is its documented answer and must be what the app answers; a comment
saying "sending it again answers {...}" is checked by sending the same command again.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.authtoken.models import Token

from prm.roles import ACCOUNT_MANAGER, CHANNEL_ADMIN
from tests.factories import PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db

API_DOC = Path(settings.BASE_DIR) / "docs" / "api.md"


@dataclass
class Example:
    command: str
    answer: object = None  # the documented JSON answer, when the doc gives one
    again: object = None  # the documented answer to sending the same command a second time
    line: int = 0


@dataclass
class Script:
    variables: dict[str, str] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)


def shell_blocks(text: str) -> list[tuple[int, list[str]]]:
    blocks, current, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if current is None and line.strip() == "```sh":
            current, start = [], number
        elif current is not None and line.strip() == "```":
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def complete(command: str) -> bool:
    """Whether the shell would run this text as it is (no open quote, no trailing backslash)."""
    if command.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:
        return False
    return True


def read_script(text: str) -> Script:
    script = Script()
    for start, lines in shell_blocks(text):
        pending, again = "", None
        for offset, line in enumerate(lines):
            if pending:
                pending += "\n" + line
            elif line.startswith("# {") and script.examples:
                script.examples[-1].answer = json.loads(line[2:])
                continue
            elif line.startswith("#") or not line.strip():
                if match := re.search(r"sending it again answers (\{.*\})", line):
                    again = json.loads(match.group(1))
                continue
            elif re.fullmatch(r"[A-Z_]+=\S+", line.strip()):
                name, value = line.strip().split("=", 1)
                script.variables[name] = value
                continue
            else:
                pending = line
            if complete(pending):
                script.examples.append(Example(pending, again=again, line=start + offset + 1))
                pending, again = "", None
        assert not pending, f"docs/api.md line {start}: a command is not closed"
    return script


def curl_request(command: str, variables: dict[str, str]) -> dict:
    """The request a curl command line sends: method, path with query, headers, body."""
    for name, value in variables.items():
        command = command.replace(f"${name}", value)
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == "curl", command
    method, url, headers, data, query, as_query = None, None, {}, None, [], False
    words = iter(words[1:])
    for word in words:
        if word == "-s":
            continue
        elif word == "-X":
            method = next(words)
        elif word == "-H":
            name, value = next(words).split(":", 1)
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = next(words)
        elif word == "-G":
            as_query = True
        elif word == "--data-urlencode":
            query.append(tuple(next(words).split("=", 1)))
        elif word.startswith("-"):
            raise AssertionError(f"curl option {word} is not translated by this test: {command}")
        else:
            url = word
    assert url, command
    parts = urlsplit(url)
    assert parts.path.startswith("/api/v1/"), url
    if query and not as_query:
        raise AssertionError(f"--data-urlencode without -G sends a body: {command}")
    path = parts.path + ("?" + urlencode(query) if query else "")
    return {"method": method or ("POST" if data is not None else "GET"), "path": path, "headers": headers, "data": data}


def send(client: Client, request: dict):
    headers = dict(request["headers"])
    content_type = headers.pop("Content-Type", "application/octet-stream")
    return client.generic(
        request["method"], request["path"], request["data"] or "", content_type=content_type, headers=headers
    )


@pytest.fixture
def documented_program():
    """The users and partners the examples name: crm-sync (its token as shown), ACME-1, jsmith."""
    crm_sync = UserFactory(username="crm-sync", groups=[CHANNEL_ADMIN])
    crm_sync.set_password("...")
    crm_sync.save()
    jsmith = UserFactory(username="jsmith", groups=[ACCOUNT_MANAGER])
    PartnerFactory(external_id="ACME-1", name="Acme", region="EMEA", owner=jsmith)
    return crm_sync


def test_the_examples_are_found():
    script = read_script(API_DOC.read_text())
    assert len(script.examples) >= 4
    assert script.variables["TOKEN"]
    assert any(example.again is not None for example in script.examples)
    assert all(example.command.startswith("curl") for example in script.examples)


def test_every_curl_example_of_the_api_doc_works_as_documented(documented_program):
    script = read_script(API_DOC.read_text())
    # The token the doc shows is the one the token endpoint answers, so the later examples run verbatim.
    Token.objects.create(user=documented_program, key=script.variables["TOKEN"])
    client = Client()
    for example in script.examples:
        request = curl_request(example.command, script.variables)
        response = send(client, request)
        where = f"docs/api.md line {example.line}: {request['method']} {request['path']}"
        assert response.status_code < 300, (where, response.content[:300])
        if example.answer is not None:
            assert response.json() == example.answer, where
        if example.again is not None:
            assert send(client, request).json() == example.again, where


def test_the_translation_sends_what_curl_would():
    request = curl_request(
        'curl -s -G https://h/api/v1/activities/ -H "Authorization: Token $T" '
        "--data-urlencode since=2026-07-03T00:00:00+02:00 --data-urlencode kind=a,b",
        {"T": "abc"},
    )
    assert request == {
        "method": "GET",
        "path": "/api/v1/activities/?since=2026-07-03T00%3A00%3A00%2B02%3A00&kind=a%2Cb",
        "headers": {"Authorization": "Token abc"},
        "data": None,
    }
    with pytest.raises(AssertionError):
        curl_request("curl -k https://h/api/v1/partners/", {})
