"""Passwords and tokens.

Access tokens are JWTs (RFC 8725): HS256 only, typed `at+jwt`, with issuer, audience,
subject, session, issue and expiry times required. Refresh, verification and reset
tokens are opaque random strings of which only a SHA-256 digest is stored, so that a
database leak yields no usable token.

API keys are opaque too, `ak_` and a public part (the prefix lists show) followed by 256
random bits. They are checked on every request they make, so they are stored as an
HMAC-SHA256 keyed with a key derived from SECRET_KEY: one hash per request, and a leaked
table cannot be tested against guesses without the server's key. Changing SECRET_KEY
therefore ends every API key, as it ends every login.

Passwords are NFKC-normalised before they are hashed or checked, so that the same
characters typed on two keyboards (a composed or decomposed "é", the Ångström sign or
"Å") are the same password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any

import jwt
from anyio import to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from app.core.clock import to_millisecond, utcnow
from app.core.config import Settings
from app.core.secret_key import predictable_positions

ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
# Clock skew tolerated between instances when checking exp and iat.
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ["exp", "iat", "sub", "sid", "iss", "aud"]
# RFC 7519's NumericDate is a JSON number; PyJWT would also take "1700000000".
NUMERIC_DATE_CLAIMS = ("exp", "iat", "nbf")
ALLOWED_HEADERS = frozenset({"alg", "typ"})

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# Four characters that repeat or step on from the ones before are a pattern, and a
# password with fewer than four characters outside patterns is refused.
PASSWORD_PATTERN_RUN = 4

# Argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane); bcrypt only verifies hashes
# carried over from another system, which are rehashed with Argon2id at the next login.
password_hash = PasswordHash(
    (Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1), BcryptHasher())
)


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    # The login (refresh token family) the token belongs to: ending that login ends
    # its access tokens at once.
    session_id: uuid.UUID
    issued_at: float


def normalise_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


# Hashing takes tens of milliseconds of CPU by design. The async functions run it in a
# worker thread (argon2 releases the GIL), so that other requests go on meanwhile.


async def hash_password(password: str) -> str:
    return await to_thread.run_sync(password_hash.hash, normalise_password(password))


def _verify(password: str, hashed: str) -> tuple[bool, str | None]:
    normalised = normalise_password(password)
    try:
        valid, new_hash = password_hash.verify_and_update(normalised, hashed)
        if valid or normalised == password:
            return valid, new_hash
        # Hashes stored before passwords were normalised hold the characters as typed;
        # such a password still works once, and is stored normalised from then on.
        if password_hash.verify(password, hashed):
            return True, password_hash.hash(normalised)
    except ValueError:
        # A legacy bcrypt hash refuses passwords over 72 bytes: that is a wrong password,
        # not a server error.
        pass
    return False, None


async def verify_password(password: str, hashed: str) -> tuple[bool, str | None]:
    """Check a password; the second value is a new hash when the stored one is outdated."""
    return await to_thread.run_sync(_verify, password, hashed)


@cache
def _dummy_hash() -> str:
    return password_hash.hash(secrets.token_urlsafe(16))


async def burn_password_check(password: str) -> None:
    """Spend the time of a real check, so that unknown emails cannot be told by timing."""
    await to_thread.run_sync(password_hash.verify, password, _dummy_hash())


# zxcvbn's frequency lists: the 30,000 most common passwords of the breach corpora it was
# built from, and the names and English words people build passwords from (about 94,000
# entries in all). Loaded at the first check, so processes that never set a password
# never hold them.
COMMON_PASSWORD_LISTS = (
    "passwords",
    "english_wikipedia",
    "female_names",
    "male_names",
    "surnames",
    "us_tv_and_film",
)


@cache
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word for name in COMMON_PASSWORD_LISTS for word in FREQUENCY_LISTS[name])


def password_problem(password: str, *, email: str | None = None) -> str | None:
    """Say why a password is not acceptable, or return None. No composition rules, as
    NIST SP 800-63B advises: length, and not a password attackers try first."""
    password = normalise_password(password)
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"The password must be at least {PASSWORD_MIN_LENGTH} characters long."
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"The password must be at most {PASSWORD_MAX_LENGTH} characters long."
    if len(password) - len(predictable_positions(password, PASSWORD_PATTERN_RUN)) < 4:
        return "The password repeats or steps through characters (like 00000000 or abcdefgh)."
    folded = password.casefold()
    if folded in common_passwords():
        return (
            "This password is a common password, name or word that attackers try first; "
            "choose another (several unrelated words make a strong one)."
        )
    if email and folded in {email.casefold(), email.casefold().partition("@")[0]}:
        return "The password must not be your email address or its name part."
    return None


def create_access_token(
    user_id: uuid.UUID, session_id: uuid.UUID, settings: Settings, now: datetime
) -> str:
    expires = now + timedelta(minutes=settings.ACCESS_TOKEN_MINUTES)
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "sid": str(session_id),
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        # Millisecond precision lets a password change cut off tokens issued a moment
        # earlier without also rejecting the ones issued right after it.
        "iat": to_millisecond(now).timestamp(),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(
        payload,
        settings.SECRET_KEY.get_secret_value(),
        algorithm=ALGORITHM,
        headers={"typ": ACCESS_TOKEN_TYPE},
    )


@dataclass(frozen=True)
class VerifiedToken:
    claims: AccessClaims
    expires_at: float


def decode_access_token(token: str, settings: Settings) -> AccessClaims:
    """The claims of a valid access token of this service; InvalidTokenError otherwise.

    A token's signature, header and claims are checked once: a token seen again (every
    request of a client carries the same one) is looked up among the recently verified,
    and only its expiry is checked again.
    """
    verified = verify_access_token(
        token,
        settings.SECRET_KEY.get_secret_value(),
        settings.JWT_AUDIENCE,
        settings.JWT_ISSUER,
    )
    if utcnow().timestamp() > verified.expires_at + LEEWAY_SECONDS:
        raise InvalidTokenError("expired token")
    return verified.claims


# Keyed by the token and everything it was verified against; a token that fails is not
# kept, so only valid ones fill it.
@lru_cache(maxsize=4096)
def verify_access_token(token: str, secret: str, audience: str, issuer: str) -> VerifiedToken:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidTokenError("malformed token") from exc
    # Key-location headers (kid, jku, jwk, x5u, ...) would let the token choose how it is
    # verified; this service has one key, so any of them means the token is not ours.
    if set(header) - ALLOWED_HEADERS:
        raise InvalidTokenError("unexpected token header")
    if header.get("typ") != ACCESS_TOKEN_TYPE or header.get("alg") != ALGORITHM:
        raise InvalidTokenError("not an access token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidTokenError("invalid token") from exc
    for name in NUMERIC_DATE_CLAIMS:
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidTokenError(f"{name} is not a NumericDate")
    try:
        access = AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            issued_at=float(claims["iat"]),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidTokenError("invalid token") from exc
    return VerifiedToken(access, float(claims["exp"]))


def new_opaque_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


API_KEY_PREFIX = "ak_"
# The part of a key that lists show, to tell keys apart: "ak_" and 8 hex digits.
API_KEY_VISIBLE_LENGTH = len(API_KEY_PREFIX) + 8
API_KEY_MAX_LENGTH = 100


def new_api_key() -> tuple[str, str]:
    """A new API key and its visible prefix."""
    visible = API_KEY_PREFIX + secrets.token_hex(4)
    return f"{visible}_{secrets.token_urlsafe(32)}", visible


def is_api_key(token: str) -> bool:
    """Whether a bearer credential is meant as an API key (an access token is a JWT,
    which starts with "eyJ")."""
    return token.startswith(API_KEY_PREFIX)


@cache
def _api_key_hash_key(secret_key: str) -> bytes:
    # Its own key, derived with a label, so that no other use of SECRET_KEY (signing
    # access tokens) ever computes the same value.
    return hmac.new(secret_key.encode("utf-8"), b"api key hash", hashlib.sha256).digest()


def api_key_digest(token: str, settings: Settings) -> str:
    key = _api_key_hash_key(settings.SECRET_KEY.get_secret_value())
    return hmac.new(key, token.encode("utf-8"), hashlib.sha256).hexdigest()
