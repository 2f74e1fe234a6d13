"""Before `copier update` merges: keep Copier's render of the previous template version.

Copier renders the project's current template version with its answers into a scratch
directory, runs this script (a "before" `_migrations` entry, see copier.yml) from the
project's directory, and deletes that render before the post-update hook runs. The hook
needs the same render, to tell the user's changes from the template's: keeping Copier's
spares rendering it a second time, which would take about as long as a `copier copy`.

Whatever goes wrong here costs time, never correctness: without a kept render the hook
renders the previous version itself. Only the standard library is used: this runs under
the Python that runs Copier.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from update.renders import keep_copiers_render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers-file", default=".copier-answers.yml")
    args = parser.parse_args(argv)
    try:
        keep_copiers_render(Path.cwd(), args.answers_file)
    except OSError as error:
        print(f"(the previous template render is not kept: {error})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
