"""Schemathesis against the generated API, running for real, signed in as its owner.

Every operation in the app's own OpenAPI document gets generated requests, valid and
invalid; each answer must be something other than a 5xx and must match what the document
says about it: a status it lists, and the body schema, content type and headers it gives
for that status. The number of examples per operation is bounded (FUZZ_EXAMPLES, 15
unless set) to fit CI's budget; under CI (CI set) the examples are derandomized, so that
a red build always means a change of the code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from e2e_support import OWNER_EMAIL, OWNER_PASSWORD, SHARED_REDIS, Stack, launch, redis_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from template_tools import ProjectEnv

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
    status_code_conformance,
]


@pytest.fixture(scope="module")
def stack(
    render: Callable[..., Path], project_env: ProjectEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis_cli(SHARED_REDIS, "FLUSHDB")
    # No worker: what is checked is the API's answers; the jobs it enqueues wait in Redis.
    # Production serves no schema unless DOCS_ENABLED asks for it, as here.
    with launch(
        render(),
        project_env,
        tmp_path_factory.mktemp("fuzz"),
        redis_url=SHARED_REDIS,
        worker=False,
        DOCS_ENABLED="true",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def owner_headers(stack: Stack) -> dict[str, str]:
    token = stack.api.login(OWNER_EMAIL, OWNER_PASSWORD)["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_every_operation(stack: Stack, owner_headers: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    failures: dict[str, BaseException] = {}
    operations = []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations.append(operation.label)
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=bool(os.environ.get("CI")),
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(base_url=stack.url, headers=owner_headers, checks=CHECKS)

        try:
            fuzz()
        except (AssertionError, FailureGroup, Failure) as exc:
            # One operation's failures; the other operations still run.
            failures[operation.label] = exc
    # Every route of the app, health probes included, was reached.
    assert len(operations) >= 20, operations
    assert "POST /api/v1/organizations/{org_id}/files" in operations
    assert not failures, "\n\n".join(f"{label}:\n{error}" for label, error in failures.items())
