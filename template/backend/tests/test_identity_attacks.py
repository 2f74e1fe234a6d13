"""The identity routes against an attacker's script: concurrent guesses over real sockets,
forged client addresses, Unicode forms of a password, common passwords, tokens kept after
their session ended, and the answers and timings that would tell which accounts exist."""

from __future__ import annotations

import asyncio
import statistics
import time
import tomllib
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.proxy import ClientAddressMiddleware, forwarded_client
from app.core.security import password_hash
from app.main import create_app
from app.models import User
from app.services import token_service
from tests.servers import api_server
from tests.support import PASSWORD, add_user, bearer, login, register
from tools.deployers.fly import fly_manifest
from tools.deployers.render import render_manifest

LOGIN = "/api/v1/auth/login"
ACCOUNT_BUDGET = 5  # LOGIN_LIMIT_PER_ACCOUNT's default, "5/15 minutes"


async def guess(http: httpx.AsyncClient, url: str, password: str) -> int:
    response = await http.post(
        f"{url}{LOGIN}", data={"username": "ada@example.com", "password": password}
    )
    return response.status_code


def checked_passwords(*logs: Path) -> int:
    """How many wrong passwords the servers checked, from their logs."""
    return sum(log.read_text().count("Login failed (wrong password)") for log in logs)


@pytest.fixture
def two_instances(
    settings: Settings, redis_url: str, tmp_path: Path
) -> Iterator[tuple[list[str], list[Path]]]:
    """Two API processes sharing the test database and Redis, as behind a load balancer."""
    shared = settings.model_copy(update={"REDIS_URL": redis_url})
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    with api_server(shared, logs[0]) as first, api_server(shared, logs[1]) as second:
        yield [first, second], logs


@pytest.mark.redis
async def test_a_login_burst_on_two_instances_checks_only_the_budget(
    app: FastAPI, two_instances: tuple[list[str], list[Path]]
) -> None:
    await add_user(app, "ada@example.com")
    urls, logs = two_instances
    burst = 14
    async with httpx.AsyncClient(timeout=60) as http:
        statuses = await asyncio.gather(
            *(guess(http, urls[number % 2], f"wrong guess {number}") for number in range(burst))
        )
        await asyncio.sleep(0.01)
        right_password = await guess(http, urls[0], PASSWORD)
    assert sorted(statuses) == [401] * ACCOUNT_BUDGET + [429] * (burst - ACCOUNT_BUDGET)
    assert checked_passwords(*logs) == ACCOUNT_BUDGET
    # The budget is spent: the owner's own password waits too, which is what stops a
    # guess that happens to be right from being told apart.
    assert right_password == 429


@pytest.mark.redis
async def test_concurrent_wrong_current_passwords_are_throttled_not_failed(
    app: FastAPI, two_instances: tuple[list[str], list[Path]]
) -> None:
    await add_user(app, "ada@example.com")
    urls, _ = two_instances
    async with httpx.AsyncClient(timeout=60) as http:
        tokens = (
            await http.post(
                f"{urls[0]}{LOGIN}", data={"username": "ada@example.com", "password": PASSWORD}
            )
        ).json()
        headers = bearer(tokens["access_token"])

        async def change(url: str, number: int) -> int:
            response = await http.post(
                f"{url}/api/v1/auth/change-password",
                headers=headers,
                json={"current_password": f"not it {number}", "new_password": "a new passphrase"},
            )
            return response.status_code

        statuses = await asyncio.gather(*(change(urls[n % 2], n) for n in range(10)))
    assert sorted(statuses) == [400] * ACCOUNT_BUDGET + [429] * (10 - ACCOUNT_BUDGET)


async def test_a_login_burst_on_one_instance_without_redis(
    app: FastAPI, settings: Settings, tmp_path: Path
) -> None:
    await add_user(app, "ada@example.com")
    log = tmp_path / "api.log"
    with api_server(settings, log) as url:
        async with httpx.AsyncClient(timeout=60) as http:
            statuses = await asyncio.gather(*(guess(http, url, f"guess {n}") for n in range(12)))
    assert sorted(statuses) == [401] * ACCOUNT_BUDGET + [429] * (12 - ACCOUNT_BUDGET)
    assert checked_passwords(log) == ACCOUNT_BUDGET


# The client address: a header list as the app receives it, what the deployment trusts,
# and the address that must come out (None: the connection's peer).
FLY = b"fly-client-ip"
ADDRESS_CASES: list[tuple[str, list[tuple[bytes, bytes]], bytes | None, int, str | None]] = [
    ("no proxy: X-Forwarded-For ignored", [(b"x-forwarded-for", b"1.2.3.4")], None, 0, None),
    ("no proxy: Fly-Client-IP ignored", [(FLY, b"1.2.3.4")], None, 0, None),
    ("fly: its header", [(FLY, b"198.51.100.7")], FLY, 0, "198.51.100.7"),
    ("fly: X-Forwarded-For ignored", [(b"x-forwarded-for", b"1.2.3.4")], FLY, 0, None),
    (
        "fly: the proxy's header comes after the client's",
        [(FLY, b"1.2.3.4"), (FLY, b"198.51.100.7")],
        FLY,
        0,
        "198.51.100.7",
    ),
    ("fly: garbage", [(FLY, b"localhost; DROP TABLE")], FLY, 0, None),
    (
        "render: two hops",
        [(b"x-forwarded-for", b"198.51.100.7, 104.16.0.1")],
        None,
        2,
        "198.51.100.7",
    ),
    (
        "render: forged entries on the left",
        [(b"x-forwarded-for", b"203.0.113.9, 10.0.0.1, 198.51.100.7, 104.16.0.1")],
        None,
        2,
        "198.51.100.7",
    ),
    (
        "render: forged header line first",
        [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-for", b"198.51.100.7, 104.16.0.1")],
        None,
        2,
        "198.51.100.7",
    ),
    ("render: fewer entries than hops", [(b"x-forwarded-for", b"198.51.100.7")], None, 2, None),
    ("render: IPv6", [(b"x-forwarded-for", b"2001:db8::1, 104.16.0.1")], None, 2, "2001:db8::1"),
    ("render: not an address", [(b"x-forwarded-for", b"evil, 104.16.0.1")], None, 2, None),
    ("render: empty entries", [(b"x-forwarded-for", b",,")], None, 2, None),
]


@pytest.mark.parametrize(
    ("headers", "header", "hops", "expected"),
    [case[1:] for case in ADDRESS_CASES],
    ids=[case[0] for case in ADDRESS_CASES],
)
def test_the_client_address_is_what_the_deployments_proxies_say(
    headers: list[tuple[bytes, bytes]], header: bytes | None, hops: int, expected: str | None
) -> None:
    assert forwarded_client(headers, header, hops) == expected


def manifest_settings(target: str) -> dict[str, str]:
    """The client-address settings the target's manifest gives the web service."""
    if target == "fly":
        env = tomllib.loads(fly_manifest("My App", "my-app", "ams"))["env"]
    else:
        blueprint = yaml.safe_load(render_manifest("My App", "my_app", "oregon"))
        web = next(service for service in blueprint["services"] if service["type"] == "web")
        env = {var["key"]: var["value"] for var in web["envVars"] if "value" in var}
    assert "FORWARDED_ALLOW_IPS" not in env
    return {name: env[name] for name in ("CLIENT_IP_HEADER", "FORWARDED_HOPS") if name in env}


async def client_seen(settings: Settings, headers: list[tuple[bytes, bytes]]) -> str:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {"type": "http", "headers": headers, "client": ("10.0.0.2", 5000)}
    await ClientAddressMiddleware(app, settings)(scope, None, None)  # type: ignore[arg-type]
    host: str = seen["client"][0]
    return host


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("fly", [(b"x-forwarded-for", b"203.0.113.9, 198.51.100.7"), (FLY, b"198.51.100.7")]),
        ("render", [(b"x-forwarded-for", b"203.0.113.9, 198.51.100.7, 104.16.0.1")]),
    ],
)
async def test_each_manifest_makes_the_app_trust_its_platforms_proxy(
    settings: Settings, target: str, headers: list[tuple[bytes, bytes]]
) -> None:
    key = settings.SECRET_KEY.get_secret_value()
    configured = Settings(_env_file=None, SECRET_KEY=key, **manifest_settings(target))  # type: ignore[arg-type]
    assert await client_seen(configured, headers) == "198.51.100.7"
    # Without the manifest's settings, the same headers are not believed.
    assert await client_seen(settings, headers) == "10.0.0.2"


# Each deployment, with the headers its proxy adds for one real client, and how a client
# forges an address on top of them, in every position it can write.
PROXIES: dict[str, tuple[dict[str, Any], Any]] = {
    "peer": ({}, lambda forged, real: [("X-Forwarded-For", forged), ("Fly-Client-IP", forged)]),
    "fly": (
        {"CLIENT_IP_HEADER": "Fly-Client-IP"},
        lambda forged, real: [
            ("X-Forwarded-For", f"{forged}, {real}"),
            ("Fly-Client-IP", forged),
            ("Fly-Client-IP", real),
        ],
    ),
    "render": (
        {"FORWARDED_HOPS": 2},
        lambda forged, real: [
            ("X-Forwarded-For", forged),
            ("X-Forwarded-For", f"{forged}, {forged}, {real}, 104.16.0.1"),
        ],
    ),
}


@pytest.mark.parametrize("deployment", sorted(PROXIES))
async def test_forged_addresses_do_not_reset_the_address_budget(
    settings: Settings, deployment: str
) -> None:
    overrides, headers_for = PROXIES[deployment]
    application = create_app(
        settings.model_copy(update={"LOGIN_LIMIT_PER_ADDRESS": "3/minute", **overrides})
    )
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application, client=("198.51.100.7", 4711))
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:

            async def attempt(forged: str, real: str = "198.51.100.7") -> int:
                response = await http.post(
                    LOGIN,
                    data={"username": f"{forged}@example.com", "password": PASSWORD},
                    headers=headers_for(forged, real),
                )
                return response.status_code

            statuses = [await attempt(f"203.0.113.{number}") for number in range(4)]
            # Another real client still has its own budget where the proxy names it.
            other = await attempt("203.0.113.99", real="192.0.2.50")
    assert statuses == [401, 401, 401, 429]
    assert other == (429 if deployment == "peer" else 401)


# The same password, typed as different code points.
UNICODE_FORMS = [
    ("NFD then NFC", unicodedata.normalize("NFD", "crème brûlée café"), "crème brûlée café"),
    ("Angstrom sign then Å", "\u212bngstr\u00f6m units 42", "\u00c5ngstr\u00f6m units 42"),
    ("ligature then letters", "\ufb01ve o'clock \ufb02ight", "five o'clock flight"),
    ("full-width then ASCII", "\uff30\uff41\uff53\uff53 9 phrase", "Pass 9 phrase"),
]


@pytest.mark.parametrize(
    ("typed", "later"), [c[1:] for c in UNICODE_FORMS], ids=[c[0] for c in UNICODE_FORMS]
)
async def test_a_password_is_the_same_in_every_unicode_form(
    client: AsyncClient, typed: str, later: str
) -> None:
    registered = await client.post(
        "/api/v1/auth/register", json={"email": "ada@example.com", "password": typed}
    )
    assert registered.status_code == 202, registered.text
    for password in (later, typed):
        response = await client.post(
            LOGIN, data={"username": "ada@example.com", "password": password}
        )
        assert response.status_code == 200, password


async def test_a_hash_stored_before_normalisation_still_works_and_is_upgraded(
    app: FastAPI, client: AsyncClient
) -> None:
    typed = unicodedata.normalize("NFD", "crème brûlée café")
    user = await add_user(app, "ada@example.com")
    async with app.state.sessionmaker.begin() as session:
        stored = await session.get_one(User, user.id)
        stored.hashed_password = password_hash.hash(typed)
    first = await client.post(LOGIN, data={"username": "ada@example.com", "password": typed})
    assert first.status_code == 200
    # Rehashed in normal form: the composed spelling works from now on.
    composed = unicodedata.normalize("NFC", typed)
    second = await client.post(LOGIN, data={"username": "ada@example.com", "password": composed})
    assert second.status_code == 200


# Among the most common passwords of 8 characters or more in published breach lists.
COMMON_PASSWORDS = [
    "password", "12345678", "123456789", "1234567890", "iloveyou", "princess", "babygirl",
    "sunshine", "football", "baseball", "chocolate", "michelle", "jennifer", "elizabeth",
    "samantha", "superman", "password1", "liverpool", "qwertyuiop", "butterfly", "basketball",
    "alexander", "christian", "jonathan", "starwars", "whatever", "trustno1", "computer",
    "michael1", "iloveyou1", "sweetheart", "precious", "beautiful", "princesa", "football1",
    "danielle", "victoria", "jordan23", "1q2w3e4r", "qwerty123", "passw0rd", "11111111",
    "00000000", "Elizabeth", "abcdefgh", "aaaaaaaaaaaa",
]  # fmt: skip


@pytest.mark.parametrize("password", COMMON_PASSWORDS)
async def test_common_passwords_are_refused_with_the_reason(
    client: AsyncClient, password: str
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "ada@example.com", "password": password}
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "common password" in message or "repeats or steps" in message


async def test_logout_ends_the_access_token_at_once(client: AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    other = await login(client)
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401
    # Only that login ends.
    still = await client.get("/api/v1/users/me", headers=bearer(other["access_token"]))
    assert still.status_code == 200


async def test_a_password_change_ends_every_other_access_token(client: AsyncClient) -> None:
    await register(client)
    elsewhere = await login(client)
    here = await login(client)
    changed = await client.post(
        "/api/v1/auth/change-password",
        headers=bearer(here["access_token"]),
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
    )
    assert changed.status_code == 200
    for old in (elsewhere, here):
        me = await client.get("/api/v1/users/me", headers=bearer(old["access_token"]))
        assert me.status_code == 401
    fresh = await client.get("/api/v1/users/me", headers=bearer(changed.json()["access_token"]))
    assert fresh.status_code == 200


async def test_a_token_from_before_a_deactivation_stays_dead_after_reactivation(
    app: FastAPI, client: AsyncClient
) -> None:
    await register(client)
    tokens = await login(client)

    async def set_active(active: bool) -> None:
        async with app.state.sessionmaker.begin() as session:
            user = (
                await session.scalars(select(User).where(User.email == "ada@example.com"))
            ).one()
            # What deactivation does (user_service.set_active), without an acting admin.
            if not active:
                await token_service.revoke_all_families(session, user.id)
            user.is_active = active

    await set_active(False)
    assert (
        await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 401
    await set_active(True)
    assert (
        await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 401
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sid"]


# Each route that takes an address, and its body for one.
ACCOUNT_REQUESTS = {
    "register": lambda email: {"email": email, "password": PASSWORD},
    "request-verify": lambda email: {"email": email},
    "request-reset": lambda email: {"email": email},
}
ROUNDS = 21
# Rounds added when the first ones leave the question open, as a loaded machine can: the
# verdict is then taken on all of them. A real difference stays; noise evens out.
MORE_ROUNDS = 60


def timing_verdict(timings: dict[str, list[float]]) -> tuple[bool, tuple[float, float, float]]:
    """Whether the two kinds of request take as long, from the rounds so far: the median
    of each round's difference, against a quarter of the faster kind's median."""
    known, unknown = statistics.median(timings["known"]), statistics.median(timings["unknown"])
    tolerance = max(0.003, 0.25 * min(known, unknown))
    # Each round's two requests ran back to back: their difference is what an attacker
    # measures, and a busy moment of the machine slows both alike.
    pairs = zip(timings["known"], timings["unknown"], strict=True)
    paired = statistics.median(known_time - unknown_time for known_time, unknown_time in pairs)
    return abs(paired) <= tolerance, (paired, known, unknown)


@pytest.mark.parametrize("route", sorted(ACCOUNT_REQUESTS))
async def test_account_requests_answer_alike_and_as_fast_for_any_address(
    app: FastAPI, settings: Settings, tmp_path: Path, route: str
) -> None:
    await add_user(app, "known@example.com", verified=False)
    relaxed = settings.model_copy(
        update={
            "EMAIL_REQUEST_LIMIT_PER_ADDRESS": "10000/hour",
            "EMAIL_REQUEST_LIMIT_PER_ACCOUNT": "10000/hour",
        }
    )
    answers: dict[str, set[tuple[int, str]]] = {"known": set(), "unknown": set()}
    timings: dict[str, list[float]] = {"known": [], "unknown": []}

    async def play(http: httpx.AsyncClient, rounds: range) -> None:
        for number in rounds:
            # Each kind first in every other round, so that what one request leaves to do
            # after its answer slows the other kind no more than its own.
            kinds = ("known", "unknown") if number % 2 else ("unknown", "known")
            for kind in kinds:
                email = "known@example.com" if kind == "known" else f"nobody{number}@example.com"
                started = time.perf_counter()
                response = await http.post(
                    f"/api/v1/auth/{route}", json=ACCOUNT_REQUESTS[route](email)
                )
                timings[kind].append(time.perf_counter() - started)
                answers[kind].add((response.status_code, response.text))
                # Let the work queued after the answer finish before the next request.
                await asyncio.sleep(0.05)

    with api_server(relaxed, tmp_path / "api.log") as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            await play(http, range(ROUNDS))
            alike, figures = timing_verdict(timings)
            if not alike:
                await play(http, range(ROUNDS, ROUNDS + MORE_ROUNDS))
                alike, figures = timing_verdict(timings)
    assert answers["known"] == answers["unknown"]
    assert len(answers["known"]) == 1
    ((status, _),) = answers["known"]
    assert status == 202
    assert alike, figures
