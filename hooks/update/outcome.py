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
    # Both sides, with conflict markers around the regions both changed.
    merge_file: str | None = None
    regions: int = 0
    # Whether FILE.new keeps every change of the user's too (strict mode's clean merges).
    new_holds_yours: bool = False

    def describe(self) -> str:
        text = CATEGORIES[self.category].format(new=self.new_file)
        if self.merge_file and self.regions:
            marked = f"{self.regions} region{'s' * (self.regions != 1)} marked"
            text += f"; both sides in {self.merge_file} ({marked})"
        elif self.merge_file:
            text += f"; both sides, merged, in {self.merge_file}"
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
        """Every FILE.new and FILE.merge this run wrote."""
        written = [name for entry in self.entries for name in (entry.new_file, entry.merge_file)]
        return sorted(name for name in written if name)
