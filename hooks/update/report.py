"""The update report: printed as a table, saved as .copier-update-report.md."""

from __future__ import annotations

from pathlib import Path

from .newfiles import REPORT_FILE, digest, previous_new_files, record_line
from .outcome import CATEGORIES, Outcome
from .schema import schema_notice, schema_paths


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
    pairs = [(entry.path, entry.new_file) for entry in entries if entry.new_file]
    if pairs:
        lines += ["## Next steps" if markdown else "Next steps:", ""]
        lines += [
            "Each FILE below still holds your version; FILE.new holds the template's.",
            "Review what the template would change, then accept it or keep yours:",
            "",
        ]
        fence = ["```sh"] if markdown else []
        lines += fence
        for path, new_file in pairs:
            lines.append(f"diff -u {path} {new_file}")
        lines.append("")
        for path, new_file in pairs:
            lines.append(f"mv {new_file} {path}    # accept the template's version")
        lines += ["```"] if markdown else []
        lines += [
            "",
            (
                "To keep your version instead, delete the .new file (or merge by hand, then "
                "delete it). Commit before the next `copier update`: it needs a clean tree."
            ),
            "",
        ]
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
        outcome.schema_notice = schema_notice(project, changed)
    (project / REPORT_FILE).write_text(report(outcome, markdown=True), encoding="utf-8")
    print()
    print(report(outcome, markdown=False))
    print(f"This report is saved in {REPORT_FILE} (gitignored).")
