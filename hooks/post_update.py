"""Safe regeneration: applying the template again never loses an edit the user made.

Copier runs this script after every `copier update` (see `_migrations` in copier.yml),
from the project's directory. The work is done by the `update` package beside it, whose
docstring lists what the hook promises; this script reads Copier's arguments, reports the
outcome and sets the exit status.

Only the standard library is used: this runs under the Python that runs Copier.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# Python puts a script's own directory on sys.path, except under PYTHONSAFEPATH (or -P),
# which a user's environment may set: the package beside this script must be found anyway.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from update import finish, run_update


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", required=True, help="the template Copier is applying")
    parser.add_argument("--answers-file", default=".copier-answers.yml")
    parser.add_argument("--strict", default="False")
    args = parser.parse_args(argv)
    project = Path.cwd()
    try:
        outcome = run_update(project, args.template, args.answers_file, args.strict == "True")
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        # The update stops with an error rather than claiming a safe result; HEAD still
        # holds every file as the user committed it.
        print(f"The update's safety step failed: {error}", file=sys.stderr)
        print(
            "Your committed work is intact: `git diff` shows what the update changed and "
            "`git checkout HEAD -- FILE` brings back your version of a file.",
            file=sys.stderr,
        )
        return 1
    finish(project, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
