"""What one run of the hook did, file by file, in the words the report uses.

Every step (resolve.py, lock.py) adds an Entry per file it settled; report.py turns the
Outcome into the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Report categories, in the order the report lists them, with what each one means.
CATEGORIES = {
    "added": "new in the template",
    "updated": "the template's change applied (you had not changed this file)",
    "merged": "your changes and the template's merged cleanly",
    "relocked": "re-resolved by uv from the merged pyproject.toml, not merged line by line",
    "conflict (.new)": "your version kept; the template's version is in {new}",
    "kept": "removed by the template, modified by you: kept",
    "removed": "removed by the template (you had not changed it)",
    "skipped": "deleted by you: stays deleted (the template changed it)",
}


@dataclass(frozen=True)
class Entry:
    path: str
    category: str
    new_file: str | None = None
    note: str = ""

    def describe(self) -> str:
        text = CATEGORIES[self.category].format(new=self.new_file)
        return f"{text}; {self.note}" if self.note else text


@dataclass
class Outcome:
    operation: str
    version_from: str
    version_to: str
    strict: bool
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    schema_notice: str = ""
    # .new files of earlier runs still waiting for the user's review.
    earlier_new_files: list[str] = field(default_factory=list)
    # Every .new file of the hook's now in the project, with the SHA-256 of its content.
    record: dict[str, str] = field(default_factory=dict)

    @property
    def new_files(self) -> list[str]:
        return sorted(entry.new_file for entry in self.entries if entry.new_file)
