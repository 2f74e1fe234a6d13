"""Whether a SECRET_KEY is fit to sign tokens.

A key is judged by the randomness it can hold, not by how it looks: the smallest of the
usual alphabets that spells it (digits, hex, base64, printable ASCII) gives the bits per
character, characters that continue a pattern count for nothing, and what remains must
reach 256 bits, the strength of the HS256 signature. Every output of `openssl rand -hex
32`, `openssl rand -base64 32` and `secrets.token_urlsafe(32)` passes; `aaaa…`,
`abcabc…`, `0123…` and the samples from tutorials do not.
"""

from __future__ import annotations

import math
import secrets
import string

REQUIRED_BITS = 256
KEY_GENERATION_HINT = (
    'generate one with `python -c "import secrets; print(secrets.token_urlsafe(32))"` '
    "(or `openssl rand -hex 32`) and set it as the SECRET_KEY environment variable "
    "(or in .env)"
)
# Values that appear in docs and tutorials; a key anyone can read is no key. The hex
# one is the sample key of FastAPI's own JWT tutorial.
WELL_KNOWN_SECRET_KEYS = frozenset(
    {
        "changeme",
        "change-me",
        "changethis",
        "secret",
        "secret-key",
        "secretkey",
        "supersecret",
        "your-secret-key",
        "dev",
        "development",
        "test",
        "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",
    }
)
HEX_DIGITS = string.digits + "abcdefABCDEF"
# From the smallest: a key is credited with the size of the first alphabet that holds it.
# Hex counts 16 symbols in either case, since each digit carries four bits.
ALPHABETS: tuple[tuple[str, frozenset[str], int], ...] = (
    ("decimal digits", frozenset(string.digits), 10),
    ("hex", frozenset(HEX_DIGITS), 16),
    ("lower-case letters and digits", frozenset(string.ascii_lowercase + string.digits), 36),
    ("base64", frozenset(string.ascii_letters + string.digits + "+/-_"), 64),
    ("printable ASCII", frozenset(string.printable) - frozenset(string.whitespace), 94),
)
# A stretch this long that repeats or steps evenly is a pattern. A random hex key holds
# one by chance with a probability below one in a hundred billion (16**-12 for each of
# a few thousand places and periods), so no generated key is refused for it.
PATTERN_RUN = 12
# A repeated block longer than this holds 256 bits in any alphabet by itself, so longer
# periods need no search (which keeps the check linear in the key's length).
LONGEST_PERIOD = 128


def alphabet_of(key: str) -> tuple[str, int]:
    """The name and size of the smallest usual alphabet that spells `key`."""
    characters = set(key)
    for name, alphabet, size in ALPHABETS:
        if characters <= alphabet:
            return name, size
    # Beyond ASCII: credited like printable ASCII, since no alphabet can be assumed.
    name, _, size = ALPHABETS[-1]
    return name, size


def predictable_positions(key: str, run_length: int = PATTERN_RUN) -> set[int]:
    """Positions whose character continues a run of `run_length` or more that repeats an
    earlier stretch (`aaaa`, `abcabc`) or steps by a constant (`0123`, `aceg`)."""
    predicted: set[int] = set()

    def mark(follows: list[bool]) -> None:
        run = 0
        for index, continues in enumerate(follows):
            run = run + 1 if continues else 0
            if run == run_length:
                predicted.update(range(index - run_length + 1, index + 1))
            elif run > run_length:
                predicted.add(index)

    codes = [ord(char) for char in key]
    for period in range(1, min(len(key) // 2, LONGEST_PERIOD) + 1):
        mark([index >= period and key[index] == key[index - period] for index in range(len(key))])
    mark(
        [
            index >= 2 and codes[index] - codes[index - 1] == codes[index - 1] - codes[index - 2]
            for index in range(len(key))
        ]
    )
    return predicted


def secret_key_problem(key: str) -> str | None:
    """Say why `key` is unfit to sign tokens, or return None when it is fine."""
    if not key:
        return "SECRET_KEY is not set"
    if key.lower() in WELL_KNOWN_SECRET_KEYS or "change" in key.lower():
        return "SECRET_KEY is a well-known sample value"
    body = key.rstrip("=")
    name, size = alphabet_of(body)
    predicted = predictable_positions(body)
    bits = (len(body) - len(predicted)) * math.log2(size)
    if bits >= REQUIRED_BITS:
        return None
    if predicted:
        return (
            f"SECRET_KEY follows a pattern (repeated or sequential characters) and holds "
            f"about {bits:.0f} bits of randomness; it needs {REQUIRED_BITS}"
        )
    return (
        f"SECRET_KEY is {len(body)} characters of {name}, which hold at most {bits:.0f} "
        f"bits; it needs {REQUIRED_BITS} (for example 64 hex or 43 base64 characters)"
    )


def new_secret_key() -> str:
    """A fresh key: 48 random bytes, URL-safe base64 (384 bits)."""
    return secrets.token_urlsafe(48)
