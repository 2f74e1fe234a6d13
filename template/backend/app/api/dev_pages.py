"""The pages email links open in development when there is no web app yet.

With FRONTEND_URL unset, outside production, verification, password-reset and invitation
links point here (see app/services/account_service.py), so that a person can finish these
flows in a browser with nothing but the API running. Each page reads the one-time token from the
link's fragment, which browsers never send to a server, and posts it to the API as a web
app would. Production never mounts them: it requires FRONTEND_URL, and these paths are
404 there.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from string import Template

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse

from app.core.config import Settings
from app.models import TokenPurpose
from app.services.account_service import DEV_PAGES_PREFIX, LINK_PAGES, uses_dev_pages
from app.services.invitation_service import ACCEPT_PAGE

# One script for every page: it sends the form's fields with the token from the fragment
# to the form's data-action, and shows the API's answer as text, never as markup. A form
# with data-login signs in with its username and password first, and sends the token
# alone, as the signed-in account.
SCRIPT = """
const form = document.querySelector("form");
const answer = document.querySelector("output");
const token = new URLSearchParams(location.hash.slice(1)).get("token");
if (!token) {
  form.hidden = true;
  answer.textContent = "This link has no token: open the link from the email as it is.";
}
async function show(response) {
  const error = (await response.json().catch(() => ({}))).error ?? {};
  const details = (error.details ?? []).map((detail) => detail.message).join(" ");
  answer.textContent = `${error.message ?? response.statusText} ${details}`.trim();
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const fields = Object.fromEntries(new FormData(form));
  const headers = {"Content-Type": "application/json"};
  let body = {...fields, token};
  if (form.dataset.login) {
    const credentials = new URLSearchParams(fields);
    const login = await fetch(form.dataset.login, {method: "POST", body: credentials});
    if (!login.ok) {
      await show(login);
      return;
    }
    headers.Authorization = `Bearer ${(await login.json()).access_token}`;
    body = {token};
  }
  const response = await fetch(form.dataset.action, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
  });
  if (response.ok) {
    form.hidden = true;
    answer.textContent = form.dataset.done;
    return;
  }
  await show(response);
});
"""


def _source_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# The inline script runs by its hash: no other script, no style, no frame, and no
# request but to the API itself.
CSP = (
    f"default-src 'none'; script-src {_source_hash(SCRIPT)}; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
</head>
<body>
<h1>$title</h1>
<p>A development page of the API; your web app takes its place once FRONTEND_URL is set.</p>
<form data-action="$action" data-done="$done"$login>
$fields<button type="submit">$button</button>
</form>
<p><output></output></p>
<script>$script</script>
</body>
</html>
""")


def page(
    *, title: str, action: str, done: str, fields: str, button: str, login: str | None = None
) -> str:
    return PAGE.substitute(
        title=escape(title),
        action=escape(action),
        done=escape(done),
        login=f' data-login="{escape(login)}"' if login else "",
        fields=fields,
        button=escape(button),
        script=SCRIPT,
    )


SIGN_IN_FIELDS = (
    '<p><label>Email <input type="email" name="username" required '
    'autocomplete="username"></label></p>\n'
    '<p><label>Password <input type="password" name="password" required '
    'autocomplete="current-password"></label></p>\n'
)
RESET_FIELDS = (
    '<p><label>New password <input type="password" name="new_password" required '
    'autocomplete="new-password"></label></p>\n'
)


def add_dev_pages(app: FastAPI, settings: Settings) -> None:
    """Serve the pages when the links point at them; otherwise they do not exist."""
    if not uses_dev_pages(settings):
        return
    verify = page(
        title="Confirm your email address",
        action=app.url_path_for("verify"),
        done="Your email address is confirmed. You can close this page.",
        fields="",
        button="Confirm",
    )
    reset = page(
        title="Choose a new password",
        action=app.url_path_for("reset"),
        done="Your password is changed: sign in with the new one.",
        fields=RESET_FIELDS,
        button="Change the password",
    )
    accept = page(
        title="Accept the invitation",
        action=app.url_path_for("accept_invitation"),
        done="You are a member of the organization now. You can close this page.",
        fields=SIGN_IN_FIELDS,
        button="Sign in and accept",
        login=app.url_path_for("login"),
    )
    router = APIRouter(prefix=DEV_PAGES_PREFIX, include_in_schema=False)

    @router.get(f"/{LINK_PAGES[TokenPurpose.VERIFY_EMAIL]}", response_class=HTMLResponse)
    async def verify_email_page() -> HTMLResponse:
        return HTMLResponse(verify, headers=HEADERS)

    @router.get(f"/{LINK_PAGES[TokenPurpose.RESET_PASSWORD]}", response_class=HTMLResponse)
    async def reset_password_page() -> HTMLResponse:
        return HTMLResponse(reset, headers=HEADERS)

    @router.get(f"/{ACCEPT_PAGE}", response_class=HTMLResponse)
    async def accept_invitation_page() -> HTMLResponse:
        return HTMLResponse(accept, headers=HEADERS)

    app.include_router(router)
