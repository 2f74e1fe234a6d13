"""The API document a frontend builds on: the committed openapi.json is what the code
serves, and a TypeScript client generated from it as the README says compiles under
`tsc --strict`, with its errors typed.

Node.js and npm come from the machine (.ci/run installs Debian's `nodejs` and `npm`
where they are missing); the npm packages are pinned here and in the README.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from template_tools import ProjectEnv, maintainer_command

pytestmark = pytest.mark.slow

TYPESCRIPT = "typescript@5.9.3"
TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "ES2022",
        "module": "ESNext",
        "moduleResolution": "Bundler",
        "lib": ["ES2022", "DOM", "DOM.Iterable"],
        "skipLibCheck": False,
    },
    "include": ["src"],
}


def readme_block(readme: str, heading: str) -> list[str]:
    """The sh lines of the README section under `heading`, comments removed."""
    section = readme.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]


def typescript_example(readme: str) -> str:
    section = readme.split("## The API document and clients\n", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```ts\n(.*?)```", section, flags=re.DOTALL)
    return str(example)


def npm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    program = shutil.which(args[0])
    if program is None:
        pytest.fail(
            f"{args[0]} is not installed; this test builds a TypeScript client: "
            "apt-get install --no-install-recommends nodejs npm (.ci/run does)"
        )
    result = subprocess.run(
        [program, *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(args)}:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
    )
    return result


@pytest.mark.parametrize("answers", [{}, {"project_name": "Zoë's Ledger ✓"}])
def test_the_committed_document_is_what_the_code_serves(
    answers: dict[str, str], render: Callable[..., Path], project_env: ProjectEnv
) -> None:
    project = render(**answers)
    write = readme_block((project / "README.md").read_text(), "The API document and clients")[0]
    assert write.endswith("python -m app.cli openapi")
    shipped = (project / "openapi.json").read_bytes()
    # As written, it writes the file again: byte for byte what the template shipped.
    project_env.run(project, *shlex.split(write)[4:])
    assert (project / "openapi.json").read_bytes() == shipped
    result = project_env.run(project, *shlex.split(write)[4:], "--check")
    assert "openapi.json matches the code." in result.stdout
    document = json.loads(shipped)
    assert document["info"]["title"] == answers.get("project_name", "My App")


def test_the_maintainers_command_finds_the_shipped_document_current(tmp_path: Path) -> None:
    output = maintainer_command("uv run python scripts/openapi.py", tmp_path / "template")
    assert "template/openapi.json.jinja: unchanged" in output


def test_a_typescript_client_generated_as_the_readme_says_compiles_strictly(
    render: Callable[..., Path], tmp_path: Path
) -> None:
    project = render()
    readme = (project / "README.md").read_text()
    [_, generate] = readme_block(readme, "The API document and clients")
    assert generate.startswith("npx --yes ")
    assert f"-p {TYPESCRIPT} -p @hey-api/openapi-ts@" in generate
    frontend = tmp_path / "frontend"
    (frontend / "src").mkdir(parents=True)
    shutil.copy(project / "openapi.json", frontend / "openapi.json")
    (frontend / "package.json").write_text('{"private": true, "type": "module"}\n')
    (frontend / "tsconfig.json").write_text(json.dumps(TSCONFIG, indent=2))
    npm(*shlex.split(generate), cwd=frontend)
    client = frontend / "src" / "client"
    sdk = (client / "sdk.gen.ts").read_text()
    # Functions are named after the operation ids, not after paths and methods.
    for name in ("authLogin", "usersReadMe", "filesUpload", "filesDownload"):
        assert f"export const {name} =" in sdk, name
    types = (client / "types.gen.ts").read_text()
    # Errors are typed: a route's documented statuses, each with the envelope.
    errors = re.search(r"export type AuthLoginErrors = \{(.*?)\n\};", types, re.DOTALL)
    assert errors is not None
    assert re.findall(r"(\d{3}): ErrorResponse;", errors.group(1)) == [
        "400",
        "401",
        "413",
        "422",
        "429",
        "431",
        "503",
    ]
    # The README's example, as a module of the frontend, with what it leaves to the reader.
    example = typescript_example(readme)
    (frontend / "src" / "example.ts").write_text(
        "declare const email: string;\ndeclare const password: string;\n" + example + "export {};\n"
    )
    npm("npm", "install", "--no-audit", "--no-fund", TYPESCRIPT, cwd=frontend)
    npm("npx", "tsc", "--project", "tsconfig.json", cwd=frontend)
