"""tunnel: the local API plus a public HTTPS URL from the first tunnel program available.

In order of preference: a cloudflared quick tunnel (no account needed), ngrok (needs
NGROK_AUTHTOKEN), localtunnel through npx (needs Node.js). Each prints its public URL,
which is read from its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .base import Check, DeployState, Outcome, Printer, Step, find_program
from .local import LocalDeployer, start, stop

URL_TIMEOUT_SECONDS = 45


@dataclass(frozen=True)
class TunnelProgram:
    name: str
    step: Step
    url_pattern: re.Pattern[str]


INSTALL_HELP = (
    "install one of: cloudflared (https://developers.cloudflare.com/cloudflare-one/"
    "connections/connect-networks/downloads/), ngrok with NGROK_AUTHTOKEN set "
    "(https://ngrok.com/download), or Node.js for `npx localtunnel` (https://nodejs.org)"
)


def read_lines(process: subprocess.Popen[str]) -> Iterator[str]:
    """The program's output lines until it exits; the pipe is closed at the end."""
    if process.stdout is not None:
        with process.stdout:
            yield from process.stdout


class TunnelDeployer(LocalDeployer):
    name = "tunnel"
    description = "the API on this machine with a public HTTPS URL through a tunnel"

    def program(self) -> TunnelProgram | None:
        """The tunnel program to use, or None when none is available."""
        local = self.base_url
        cloudflared = find_program("cloudflared")
        if cloudflared:
            return TunnelProgram(
                "cloudflared",
                Step(
                    "tunnel",
                    "open a Cloudflare quick tunnel (a random trycloudflare.com address)",
                    (cloudflared, "tunnel", "--no-autoupdate", "--url", local),
                ),
                re.compile(r"https://[a-z0-9-]+\.trycloudflare\.com"),
            )
        ngrok = find_program("ngrok")
        if ngrok and os.environ.get("NGROK_AUTHTOKEN"):
            return TunnelProgram(
                "ngrok",
                Step(
                    "tunnel",
                    "open an ngrok tunnel (your ngrok account, from NGROK_AUTHTOKEN)",
                    (ngrok, "http", local, "--log", "stdout", "--log-format", "logfmt"),
                ),
                re.compile(r"url=(https://\S+)"),
            )
        npx = find_program("npx")
        if npx:
            return TunnelProgram(
                "localtunnel",
                Step(
                    "tunnel",
                    "open a localtunnel tunnel (a random loca.lt address) through npx",
                    (npx, "--yes", "localtunnel", "--port", str(self.port)),
                ),
                re.compile(r"your url is: (https://\S+)"),
            )
        return None

    def prerequisites(self, *, execute: bool) -> list[Check]:
        return [
            *super().prerequisites(execute=execute),
            Check("a tunnel program", self.program() is not None, INSTALL_HELP),
        ]

    def plan(self) -> list[Step]:
        program = self.program()
        tunnel = [program.step] if program else []
        return [*self.local_steps(), *tunnel]

    def open_tunnel(self, program: TunnelProgram) -> tuple[subprocess.Popen[str], str]:
        """Start the tunnel program and return it with the public URL it printed."""
        process = start(
            program.step.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # localtunnel and ngrok print nothing useful when they think a human watches.
            stdin=subprocess.DEVNULL,
        )
        found: list[str] = []
        seen: list[str] = []

        def scan() -> None:
            for line in read_lines(process):
                if not found:
                    seen.append(line)
                    match = program.url_pattern.search(line)
                    if match:
                        found.append(match.group(match.lastindex or 0))
            # Keep draining after the URL so that a full pipe never blocks the tunnel.

        reader = threading.Thread(target=scan, daemon=True)
        reader.start()
        deadline = time.monotonic() + URL_TIMEOUT_SECONDS
        while not found and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        if not found:
            timed_out = process.poll() is None
            # The program and whatever it started (npx leaves node behind) all stop.
            stop([process])
            # The program may exit before the reader has taken in what it printed last:
            # its pipe closes with the process group, so the reader finishes soon after.
            reader.join(timeout=5)
            output = "".join(seen[-20:]).rstrip()
            if timed_out:
                reason = f"printed no public URL within {URL_TIMEOUT_SECONDS} s"
            else:
                reason = f"gave no public URL (exit status {process.returncode})"
            raise RuntimeError(
                f"{program.name} {reason}; "
                + (f"its last output:\n{output}" if output else "it printed nothing")
                + "\nA tunnel needs this machine to reach the internet: no connection?"
            )
        return process, found[0]

    def run(self, say: Printer, state: DeployState, *, execute: bool) -> Outcome:
        program = self.program()
        if program is None:
            raise RuntimeError(f"no tunnel program found: {INSTALL_HELP}")
        outcome = self.serve(say)
        try:
            say(f"starting: {program.step.purpose}")
            process, url = self.open_tunnel(program)
        except BaseException:
            stop(outcome.processes)
            raise
        outcome.processes.append(process)
        outcome.urls["public URL"] = url
        outcome.urls["public API docs"] = f"{url}/docs"
        return outcome
