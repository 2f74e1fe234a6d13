"""The API document a frontend builds on: stable operation ids, and for every operation
each status it can answer, errors in the one envelope, and nothing it cannot answer."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app import cli
from tests.support import operations

# Generated clients name their functions after these: changing one breaks every client,
# so each change is a decision made here.
OPERATION_IDS = {
    ("GET", "/health"): "health-liveness",
    ("GET", "/health/ready"): "health-readiness",
    ("POST", "/api/v1/auth/register"): "auth-register",
    ("POST", "/api/v1/auth/login"): "auth-login",
    ("POST", "/api/v1/auth/refresh"): "auth-refresh",
    ("POST", "/api/v1/auth/logout"): "auth-logout",
    ("POST", "/api/v1/auth/request-verify"): "auth-request-verify",
    ("POST", "/api/v1/auth/verify"): "auth-verify",
    ("POST", "/api/v1/auth/request-reset"): "auth-request-reset",
    ("POST", "/api/v1/auth/reset"): "auth-reset",
    ("POST", "/api/v1/auth/change-password"): "auth-change-password",
    ("GET", "/api/v1/users/me"): "users-read-me",
    ("PATCH", "/api/v1/users/me"): "users-update-me",
    ("GET", "/api/v1/users"): "users-list",
    ("GET", "/api/v1/users/{user_id}"): "users-read",
    ("DELETE", "/api/v1/users/{user_id}"): "users-delete",
    ("PUT", "/api/v1/users/{user_id}/role"): "users-change-role",
    ("POST", "/api/v1/users/{user_id}/deactivate"): "users-deactivate",
    ("POST", "/api/v1/users/{user_id}/activate"): "users-activate",
    ("POST", "/api/v1/organizations"): "organizations-create",
    ("GET", "/api/v1/organizations"): "organizations-list",
    ("GET", "/api/v1/organizations/{org_id}"): "organizations-read",
    ("PATCH", "/api/v1/organizations/{org_id}"): "organizations-rename",
    ("DELETE", "/api/v1/organizations/{org_id}"): "organizations-delete",
    ("GET", "/api/v1/organizations/{org_id}/members"): "organizations-list-members",
    ("PUT", "/api/v1/organizations/{org_id}/members/{user_id}/role"): (
        "organizations-change-member-role"
    ),
    ("DELETE", "/api/v1/organizations/{org_id}/members/{user_id}"): "organizations-remove-member",
    ("POST", "/api/v1/organizations/{org_id}/leave"): "organizations-leave",
    ("POST", "/api/v1/organizations/{org_id}/invitations"): "organizations-invite",
    ("GET", "/api/v1/organizations/{org_id}/invitations"): "organizations-list-invitations",
    ("DELETE", "/api/v1/organizations/{org_id}/invitations/{invitation_id}"): (
        "organizations-revoke-invitation"
    ),
    ("POST", "/api/v1/invitations/accept"): "organizations-accept-invitation",
    ("POST", "/api/v1/organizations/{org_id}/api-keys"): "api-keys-create",
    ("GET", "/api/v1/organizations/{org_id}/api-keys"): "api-keys-list",
    ("DELETE", "/api/v1/organizations/{org_id}/api-keys/{key_id}"): "api-keys-revoke",
    ("GET", "/api/v1/organizations/{org_id}/audit-events"): "audit-list-organization-events",
    ("GET", "/api/v1/audit-events"): "audit-list-events",
    ("POST", "/api/v1/organizations/{org_id}/files"): "files-upload",
    ("GET", "/api/v1/organizations/{org_id}/files"): "files-list",
    ("GET", "/api/v1/organizations/{org_id}/files/{file_id}"): "files-read",
    ("DELETE", "/api/v1/organizations/{org_id}/files/{file_id}"): "files-delete",
    ("GET", "/api/v1/organizations/{org_id}/files/{file_id}/download"): "files-download",
}
ENVELOPE = {"$ref": "#/components/schemas/ErrorResponse"}
FILES = "/api/v1/organizations/{org_id}/files"


def statuses(app: FastAPI, method: str, path: str) -> set[str]:
    return set(operations(app)[(method, path)]["responses"])


def id_changes(found: dict[tuple[str, str], str]) -> str:
    """What to change in OPERATION_IDS (in this file) to match the API: lines to copy."""
    lines = []
    added = {key: name for key, name in found.items() if OPERATION_IDS.get(key) != name}
    if added:
        lines.append(
            "Add (or correct) these lines in OPERATION_IDS, in backend/tests/test_openapi.py; "
            "an id is the route's tag and its function's name (app/api/openapi.py), so "
            "rename the function to change one:"
        )
        lines += [
            f'    ("{method}", "{path}"): "{name}",' for (method, path), name in added.items()
        ]
    gone = sorted(set(OPERATION_IDS) - set(found))
    if gone:
        lines.append("Remove these lines from OPERATION_IDS: the API no longer has them:")
        lines += [
            f'    ("{method}", "{path}"): "{OPERATION_IDS[(method, path)]}",'
            for method, path in gone
        ]
    return "\n".join(lines)


def test_operation_ids_are_the_chosen_ones(app: FastAPI) -> None:
    found = {key: operation["operationId"] for key, operation in operations(app).items()}
    assert found == OPERATION_IDS, id_changes(found)
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)+", name) for name in found.values())


def test_every_error_is_documented_in_the_envelope_with_its_codes(app: FastAPI) -> None:
    for key, operation in operations(app).items():
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")) or key == ("GET", "/health/ready"):
                continue
            assert response["content"]["application/json"]["schema"] == ENVELOPE, (key, status)
            # Each code the answer can carry is listed, with what it means.
            assert re.search(r"^- `[a-z_]+`: \S", response["description"], re.M), (key, status)
    assert "HTTPValidationError" not in app.openapi()["components"]["schemas"]


def test_each_dependency_adds_the_statuses_it_can_answer(app: FastAPI) -> None:
    # No input, no 422; nothing but the request limits can refuse a liveness probe.
    assert statuses(app, "GET", "/health") == {"200", "431"}
    # Authentication 401, a role 403, the path's id 404, parameters 422, the database 503.
    assert {"401", "403", "404", "422", "503"} <= statuses(app, "GET", "/api/v1/users/{user_id}")
    # Without an id, no 404; its 403 is for an API key, which no account route takes.
    me = operations(app)[("GET", "/api/v1/users/me")]["responses"]
    assert "404" not in me
    assert "API key" in me["403"]["description"]
    # Throttles 429 with Retry-After; the service's own refusals.
    login = operations(app)[("POST", "/api/v1/auth/login")]["responses"]
    assert {"401", "413", "422", "429"} <= set(login)
    assert "Retry-After" in login["429"]["headers"]
    assert "WWW-Authenticate" in login["401"]["headers"]
    # The last owner is a conflict; uploads have their own limits and types.
    assert "409" in statuses(app, "PUT", "/api/v1/users/{user_id}/role")
    # Activating cannot take away the last owner, so it cannot answer 409.
    assert "409" in statuses(app, "POST", "/api/v1/users/{user_id}/deactivate")
    assert "409" not in statuses(app, "POST", "/api/v1/users/{user_id}/activate")
    assert {"413", "415", "503"} <= statuses(app, "POST", FILES)
    assert "Retry-After" in operations(app)[("GET", FILES)]["responses"]["503"]["headers"]


async def test_the_answers_to_anonymous_and_malformed_requests_are_documented(
    app: FastAPI, client: AsyncClient
) -> None:
    """What the app really answers, for every operation, is a status its document lists."""
    for (method, path), operation in operations(app).items():
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        documented = set(operation["responses"])
        for body in ({}, {"unexpected": "x" * 10}):
            response = await client.request(method, concrete, json=body)
            assert str(response.status_code) in documented, (method, path, response.text)
        # Bytes that are not JSON, let alone UTF-8.
        garbled = await client.request(
            method, concrete, content=b"\xff{", headers={"Content-Type": "application/json"}
        )
        assert str(garbled.status_code) in documented, (method, path, garbled.text)
        wrong_id = re.sub(r"\{[^}]+\}", "not-a-uuid", path)
        if wrong_id != path:
            response = await client.request(method, wrong_id)
            assert str(response.status_code) in operation["responses"], (method, path)


def test_the_committed_document_is_what_the_code_serves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["openapi", "--check"]) == 0, capsys.readouterr().err
    assert "openapi.json matches the code." in capsys.readouterr().out


def test_a_stale_document_is_refused_with_the_command_that_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert cli.main(["openapi", "--check", "--output", str(stale)]) == 1
    assert cli.OPENAPI_COMMAND in capsys.readouterr().err
    assert cli.main(["openapi", "--output", str(stale)]) == 0
    assert cli.main(["openapi", "--check", "--output", str(stale)]) == 0


def test_a_route_missing_from_the_ids_gets_the_line_to_copy() -> None:
    # A route no project has: a project's own are in OPERATION_IDS already.
    found = {**OPERATION_IDS, ("GET", "/api/v1/probes/{probe_id}"): "probes-read"}
    del found[("GET", "/health")]
    lines = id_changes(found).splitlines()
    assert '    ("GET", "/api/v1/probes/{probe_id}"): "probes-read",' in lines
    assert '    ("GET", "/health"): "health-liveness",' in lines
    assert id_changes(dict(OPERATION_IDS)) == ""
