"""The one rule for email addresses.

The API's schemas, `python -m app.cli` and tools/day_one (through the CLI) all ask this
module; the questionnaire, which runs before any dependency is installed, mirrors it in
the template's extensions/context.py and a test holds the two to the same answers.

The syntax is email-validator's, without a DNS lookup: the mail server decides what is
deliverable, and a lookup would make each registration as slow as the slowest resolver.
Special-use domains (.test, .localhost, .local, .invalid, ...) receive no mail from the
internet. They are what a team types on day one, so they are accepted
outside production; production refuses them, because there every address must be able to
receive its verification and password-reset links.
"""

from __future__ import annotations

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

# email-validator's list: .test, .localhost, .local, .invalid, .onion, .arpa. It accepts
# the RFC 2606 example domains (example.com, .example) everywhere, as RFC 6761 asks of
# applications, and so does this rule: they are every test suite's and demo's addresses.
SPECIAL_USE_DOMAINS = tuple(SPECIAL_USE_DOMAIN_NAMES)
# email-validator refuses its own list whatever the caller wants (only .test has a
# switch, and it also lets a dotless "@test" through), while here the environment
# decides: such a last label is swapped for an ordinary one of the same length for the
# syntax check, so that every other rule, lengths included, applies unchanged.
_REFUSED_BY_LIBRARY = frozenset(SPECIAL_USE_DOMAIN_NAMES)


# Longer input is cut in messages: 254 characters is the most an address may have.
SHOWN_LENGTH = 254


def shown(address: str) -> str:
    """The address as messages quote it: escaped, and cut when it is too long to be one."""
    if len(address) > SHOWN_LENGTH:
        return f"{address[:SHOWN_LENGTH]!r}..."
    return repr(address)


def not_an_address(address: str) -> str:
    """The sentence for an address that is not one; the questionnaire says the same."""
    return (
        f"{shown(address)} is not a valid email address; expected something like jane@example.com."
    )


def is_special_use(domain: str) -> bool:
    """Whether `domain` (lower-case, as normalised) is or lies under a special-use name."""
    return any(domain == name or domain.endswith(f".{name}") for name in SPECIAL_USE_DOMAINS)


def _checked(address: str) -> tuple[str, str]:
    """The normalised address and its domain; EmailNotValidError when it is not one."""
    head, dot, last = address.rpartition(".")
    swapped = bool(dot) and "@" in head and last.lower() in _REFUSED_BY_LIBRARY
    checked = f"{head}.{'x' * len(last)}" if swapped else address
    validated = validate_email(checked, check_deliverability=False)
    normalised, domain = validated.normalized.lower(), validated.ascii_domain.lower()
    if swapped:
        normalised = normalised[: -len(last)] + last.lower()
        domain = domain[: -len(last)] + last.lower()
    return normalised, domain


def email_problem(address: str, *, allow_special_use: bool) -> str | None:
    """Say what is wrong with `address`, or None when it is acceptable."""
    try:
        normalise_email(address, allow_special_use=allow_special_use)
    except ValueError as exc:
        return str(exc)
    return None


def normalise_email(address: str, *, allow_special_use: bool) -> str:
    """The form an address is stored and compared in: lower-case, NFC, the domain in
    Unicode. A ValueError carries the sentence to show when it is not acceptable."""
    try:
        normalised, domain = _checked(address)
    except EmailNotValidError:
        raise ValueError(not_an_address(address)) from None
    if not allow_special_use and is_special_use(domain):
        raise ValueError(
            f"{shown(address)} is at {domain}, a special-use domain that cannot receive email, "
            "which production refuses; use an address at a domain that receives mail."
        )
    return normalised
