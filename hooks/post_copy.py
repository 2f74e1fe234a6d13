"""Post-copy setup for a freshly generated dayone project.

Runs once, from the new project's directory, right after `copier copy`:

1. writes `.env` from `.env.template` with freshly generated secrets, unless a `.env`
   already exists (an existing one is never replaced);
2. with --init-git=True, creates a git repository and commits the generated files, so
   that `copier update` can bring in template improvements later.

Only the standard library is used: this runs under the Python that runs Copier.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
from pathlib import Path

# Settings in .env.template whose empty value is filled with a fresh random secret.
GENERATED_SECRETS = ("SECRET_KEY",)


def render_env(template_text: str) -> str:
    """Fill each empty secret line of the .env template with a new random value."""
    lines = []
    for line in template_text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in GENERATED_SECRETS and not value:
            line = f"{name}={secrets.token_urlsafe(48)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_env(project: Path) -> None:
    env_file = project / ".env"
    template = project / ".env.template"
    if env_file.exists():
        print(".env already exists; left as it is.")
        return
    env_file.write_text(render_env(template.read_text(encoding="utf-8")), encoding="utf-8")
    env_file.chmod(0o600)
    print("Wrote .env with a new SECRET_KEY (gitignored; keep it out of version control).")


def git(project: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    )
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
    args = parser.parse_args(argv)
    project = Path.cwd()
    write_env(project)
    if args.init_git == "True":
        init_git(project, args.author_name, args.author_email)
    return 0


if __name__ == "__main__":
    sys.exit(main())
