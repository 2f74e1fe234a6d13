"""Page parameters out of range are a 422 naming the parameter, never a database error.

An offset past the 64-bit integers that PostgreSQL and SQLite accept for OFFSET reached
the database and came back as a 500; schemathesis found it in the template's fuzzing.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.api.deps import MAX_OFFSET
from app.core.config import Settings
from app.core.rbac import Role
from tests.support import organization_id, token_for


@pytest.mark.parametrize(
    "path", ["/api/v1/users", "/api/v1/organizations", "{org}/files", "{org}/members"]
)
async def test_offsets_up_to_the_largest_the_database_takes(
    path: str, app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    headers = await token_for(app, settings, "owner@example.com", role=Role.OWNER)
    path = path.format(org=f"/api/v1/organizations/{await organization_id(client, headers)}")
    last = await client.get(path, params={"offset": MAX_OFFSET}, headers=headers)
    assert last.status_code == 200, last.text
    assert last.json()["items"] == []
    past = await client.get(path, params={"offset": MAX_OFFSET + 1}, headers=headers)
    assert past.status_code == 422
    assert [detail["field"] for detail in past.json()["error"]["details"]] == ["query.offset"]
