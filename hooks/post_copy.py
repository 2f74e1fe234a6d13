"""Post-copy setup for a freshly generated dayone project.

Runs once, from the new project's directory, right after `copier copy`:

1. writes `.env` from `.env.template` with freshly generated secrets, unless a `.env`
   already exists (an existing one is never replaced), with the project's own
   tools/envfile.py;
2. with --init-git=True, creates a git repository and commits the generated files, so
   that `copier update` can bring in template improvements later.

When the project is a git project with history already (`copier recopy --overwrite`, or
`copier copy --overwrite` over it), the copy has just overwritten its files: instead of
step 2, the update package's `protect_regeneration` puts back every file the user had
changed and leaves the template's version beside it as FILE.new.

Only the standard library is used: this runs under the Python that runs Copier.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# Python puts a script's own directory on sys.path, except under PYTHONSAFEPATH (or -P),
# which a user's environment may set: the modules beside this script must be found anyway.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bytecode_free import import_path
from update import protect_regeneration


def write_env(project: Path) -> None:
    """Create .env with the generated project's own code, the same that `day_one` runs."""
    # Without bytecode: a __pycache__ left in tools/ would be an untracked file in the project.
    envfile = import_path(project / "tools" / "envfile.py")
    if envfile.create_env(project):
        print("Wrote .env with a new SECRET_KEY (gitignored; keep it out of version control).")
    else:
        print(".env already exists; left as it is.")


def git(project: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True)
    return result.stdout.strip()


def has_identity(project: Path) -> bool:
    try:
        return bool(git(project, "config", "user.email"))
    except subprocess.CalledProcessError:
        return False


def init_git(project: Path, author_name: str, author_email: str) -> None:
    if (project / ".git").exists():
        print("A git repository exists already; no initial commit made.")
        return
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", "--all")
    # The answers' author signs the first commit only when git has no identity
    # configured, so that the commit also succeeds on a fresh machine.
    identity: list[str] = []
    if not has_identity(project):
        identity = ["-c", f"user.name={author_name}", "-c", f"user.email={author_email}"]
    message = "Initial commit from the dayone template"
    git(project, *identity, "commit", "--quiet", "--no-verify", "-m", message)
    print("Created a git repository with the initial commit.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--init-git", default="True")
    parser.add_argument("--author-name", default="dayone")
    parser.add_argument("--author-email", default="dayone@example.com")
    parser.add_argument("--template", default=None)
    parser.add_argument("--answers-file", default=".copier-answers.yml")
    args = parser.parse_args(argv)
    project = Path.cwd()
    write_env(project)
    if args.template and protect_regeneration(project, args.template, args.answers_file):
        return 0
    if args.init_git == "True":
        init_git(project, args.author_name, args.author_email)
    return 0


if __name__ == "__main__":
    sys.exit(main())
