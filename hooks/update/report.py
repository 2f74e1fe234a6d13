"""The update report: printed as a table, saved as .copier-update-report.md."""

from __future__ import annotations

import shlex
from pathlib import Path

from .newfiles import REPORT_FILE, digest, previous_new_files, record_line
from .outcome import CATEGORIES, Entry, Outcome
from .schema import schema_notice, schema_paths, stale_environment


def table(rows: list[tuple[str, str, str]], markdown: bool) -> str:
    header = ("change", "file", "what happened")
    if markdown:
        escaped = [tuple(cell.replace("|", "\\|") for cell in row) for row in rows]
        lines = ["| " + " | ".join(header) + " |", "|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in escaped]
        return "\n".join(lines)
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()
    ]
    lines.append("  ".join("-" * width for width in widths))
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


# The API document the project commits is written from its code, which the update may
# have changed on both sides: whatever the merge made of it, the code has the last word.
API_DOCUMENT = "openapi.json"
API_DOCUMENT_COMMAND = "uv run --directory backend python -m app.cli openapi"
API_DOCUMENT_NOTICE = (
    f"{API_DOCUMENT} is written from the code: once the update's files are settled, run "
    f"`{API_DOCUMENT_COMMAND}` and commit the result (CI checks that it matches)."
)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def finish_file(entry: Entry) -> list[str]:
    """The ways to finish one file the update set aside, each a command to copy, with
    what it drops."""
    path, new = shlex.quote(entry.path), shlex.quote(entry.new_file or "")
    merge = shlex.quote(entry.merge_file) if entry.merge_file else None
    if entry.path == API_DOCUMENT:
        aside = " ".join(name for name in (new, merge) if name)
        return [
            f"# {path}: written from the code, neither side: once the others are settled,",
            f"rm {aside} && {API_DOCUMENT_COMMAND}",
        ]
    if merge and not entry.regions:
        return [
            f"# {path}: {merge} holds your change and the template's, merged",
            f"mv {merge} {path} && rm {new}",
            "#   the template's version: drops your changes to this file",
            f"mv {new} {path} && rm {merge}",
            "#   your version: drops the template's change to this file",
            f"rm {new} {merge}",
        ]
    if merge:
        regions = plural(entry.regions, "region")
        return [
            f"# {path}: {regions} you and the template both changed, marked in {merge}",
            (
                "#   both sides, losing nothing: edit the marked regions of "
                f"{merge} until no marker is left, then"
            ),
            f"mv {merge} {path} && rm {new}",
            f"#   the template's version: drops your side of the {regions}",
            f"mv {new} {path} && rm {merge}",
            "#   your version: drops the template's change to this file",
            f"rm {new} {merge}",
        ]
    if entry.new_holds_yours:
        return [
            f"# {path}: {new} holds your change and the template's, merged",
            f"mv {new} {path}",
            "#   or keep your version, without the template's change:",
            f"rm {new}",
        ]
    return [
        f"# {path}: the template's version, which drops your changes to this file",
        f"mv {new} {path}",
        "#   or keep your version, without the template's change:",
        f"rm {new}",
    ]


def next_steps(entries: list[Entry], version: str, markdown: bool) -> list[str]:
    # The API document is written from the code: it comes last, once the code is settled.
    entries = sorted(entries, key=lambda entry: entry.path == API_DOCUMENT)
    lines = [
        (
            "Each file below still holds your version, and FILE.new the template's. Where a "
            "FILE.merge is listed, you both changed the same lines: FILE.merge holds both "
            "sides, each such region between `<<<<<<< yours` and `>>>>>>> template "
            f"{version}` markers, and FILE.new only the template's side of it."
        ),
        "",
        "Review what the template would change, then finish each file in one of the ways shown:",
        "",
    ]
    lines += ["```sh"] if markdown else []
    lines += [
        f"diff -u {shlex.quote(entry.path)} {shlex.quote(entry.new_file or '')}"
        for entry in entries
    ]
    for entry in entries:
        lines += ["", *finish_file(entry)]
    lines += ["```"] if markdown else []
    lines += [
        "",
        (
            "`git diff --check` names any conflict marker left in a file. Commit before the "
            "next `copier update`: it needs a clean tree."
        ),
        "",
    ]
    return lines


def report(outcome: Outcome, markdown: bool) -> str:
    order = list(CATEGORIES)
    entries = sorted(outcome.entries, key=lambda entry: (order.index(entry.category), entry.path))
    rows = [(entry.category, entry.path, entry.describe()) for entry in entries]
    mode = "strict" if outcome.strict else "default"
    title = "# Template update report" if markdown else "Template update report"
    code = "`" if markdown else ""
    lines = [
        title,
        "",
        (
            f"{code}copier {outcome.operation}{code}: template {outcome.version_from} → "
            f"{outcome.version_to}, {mode} mode."
        ),
        "",
    ]
    if rows:
        lines += [table(rows, markdown), ""]
    else:
        lines += ["Nothing changed: the template brings no change to this project.", ""]
    for warning in outcome.warnings:
        lines += [f"Warning: {warning}", ""]
    kept_aside = [entry for entry in entries if entry.new_file]
    if kept_aside:
        lines += ["## Next steps" if markdown else "Next steps:", ""]
        lines += next_steps(kept_aside, outcome.version_to, markdown)
    waiting = sorted(set(outcome.earlier_new_files) - set(outcome.new_files))
    if waiting:
        lines += [
            "Still waiting for your review from an earlier update: " + ", ".join(waiting),
            "",
        ]
    kept = [entry.path for entry in entries if entry.category == "kept"]
    if kept:
        lines += [
            (
                "Kept files are no longer part of the template; delete them with `git rm` "
                "once nothing of yours needs them."
            ),
            "",
        ]
    if outcome.schema_notice:
        lines += ["## Database" if markdown else "Database:", ""]
        lines += [*(["```text"] if markdown else []), outcome.schema_notice]
        lines += [*(["```"] if markdown else []), ""]
    if markdown:
        # Earlier .new files the user has not dealt with yet stay recorded as the hook's,
        # so that a later update may still replace them.
        lines.append(record_line(outcome.record))
    return "\n".join(lines).rstrip() + "\n"


def finish(project: Path, outcome: Outcome) -> None:
    outcome.earlier_new_files = sorted(previous_new_files(project))
    outcome.record = {
        name: sha
        for name in {*outcome.new_files, *outcome.earlier_new_files}
        if (sha := digest(project / name)) is not None
    }
    changed = schema_paths(outcome.entries)
    if changed:
        stale = stale_environment(outcome.entries)
        outcome.schema_notice = schema_notice(project, changed, stale)
    (project / REPORT_FILE).write_text(report(outcome, markdown=True), encoding="utf-8")
    print()
    print(report(outcome, markdown=False))
    print(f"This report is saved in {REPORT_FILE} (gitignored).")
