"""Uploads as an attacker sends them: markup passed off as text, names that would run
as scripts once saved, and downloads a browser might render."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient

from app.core.config import Settings
from app.services.file_types import EXTENSIONS, detect_content_type
from tests.support import files_path, running_app, token_for
from tests.support import upload as upload_file

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(600)
GIF = b"GIF89a" + bytes(600)
PDF = b"%PDF-1.7\n" + b"1 0 obj << >> endobj\n" * 40
TEXT = b"Minutes of the meeting: nothing to report.\n"
BOM = b"\xef\xbb\xbf"
# Past SNIFF_BYTES, so what follows is read after the type was decided.
LONG_TEXT = b"All quiet on the notes front. " * 20


def upload(client: AsyncClient, headers: dict[str, str], content: bytes, **options: str) -> Any:
    """An upload declared as text, as a text file would be sent."""
    return upload_file(
        client, headers, content, **{"name": "notes.txt", "declared": "text/plain", **options}
    )


async def total_files(client: AsyncClient, headers: dict[str, str]) -> int:
    total: int = (await client.get(await files_path(client, headers), headers=headers)).json()[
        "total"
    ]
    return total


@pytest.mark.parametrize(
    ("content", "detected"),
    [
        (b"<img src=x onerror=alert(document.domain)>", "text/html"),
        (b"<!--x--><script>alert(1)</script>", "text/html"),
        (b"<a href=javascript:alert(1)>open</a>", "text/html"),
        (b"<!DOCTYPE svg><svg onload=alert(1)>", "image/svg+xml"),
        (b"<style>*{background:url(javascript:alert(1))}</style>", "text/html"),
        (b"<SCRIPT>alert(1)</SCRIPT>", "text/html"),
        (BOM + b"<img src=x onerror=alert(1)>", "text/html"),
        (b"\r\n\t  \x0c<IMG SRC=x OnError=alert(1)>", "text/html"),
        (BOM + b"\n  <Svg OnLoad=alert(1)>", "image/svg+xml"),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" onload="x()"/>',
            "image/svg+xml",
        ),
        (
            b'<?xml version="1.0"?><x:script xmlns:x="http://www.w3.org/1999/xhtml"/>',
            "application/xml",
        ),
        (b"<?php system($_GET['c']); ?>", "text/html"),
        (b"</title><script>alert(1)</script>", "text/html"),
    ],
)
async def test_markup_at_the_start_is_its_own_type_and_refused(
    client: AsyncClient, ada: dict[str, str], content: bytes, detected: str
) -> None:
    response = await upload(client, ada, content)
    assert response.status_code == 415, response.text
    assert (
        f"The file's content is {detected}, which is not accepted"
        in (response.json()["error"]["message"])
    )
    assert await total_files(client, ada) == 0


@pytest.mark.parametrize(
    ("content", "quoted"),
    [
        (b"Dear team,\n<img src=x onerror=alert(1)>", "<img"),
        (b"notes <!-- hidden --> more", "<!--"),
        (b"click here: <a href=javascript:alert(1)>x</a>", "<a"),
        (b"see below\n<!DOCTYPE svg><svg onload=alert(1)>", "<!DOCTYPE"),
        (b"plain, then <STYLE>*{}</STYLE>", "<STYLE"),
        (b"a closing tag alone </b> is markup too", "</b"),
        (b"php: <?php echo 1; ?>", "<?php"),
        (BOM + b"text first, then <svg onload=alert(1)>", "<svg"),
        (LONG_TEXT + b"<script>alert(1)</script>", "<script"),
        (LONG_TEXT * 10 + b"<iFrame src=//example.com>", "<iFrame"),
        # Multi-byte characters across the first bytes' end do not hide what follows.
        ("naïve café ".encode() * 60 + b"<img src=x>", "<img"),
        (b"+ADw-script+AD4-alert(1)+ADw-/script+AD4-", "+ADw"),
        (LONG_TEXT + b"+ADw-img src=x onerror=alert(1)+AD4-", "+ADw"),
    ],
)
async def test_text_holding_markup_anywhere_is_refused_and_says_why(
    client: AsyncClient, ada: dict[str, str], content: bytes, quoted: str
) -> None:
    response = await upload(client, ada, content, name="notes.txt")
    assert response.status_code == 415, response.text
    message = response.json()["error"]["message"]
    assert message.startswith(f"The text contains markup (`{quoted}`), which browsers may run")
    assert await total_files(client, ada) == 0


@pytest.mark.parametrize(
    "content",
    [
        b"if a < b and b > c then a < c",
        b"x <= 3 && y >= 4; a <- b; 1<2; <=> and ->",
        b"I <3 this, and 5 < 10 < 20",
        b"a < script > is not a tag: a tag's name follows the < at once",
        b"C++ is +1; +AD, +ADx and +adw- are not UTF-7's <",
        LONG_TEXT * 30 + b"1 < 2\n",
    ],
)
async def test_text_with_angle_brackets_that_are_not_markup_is_accepted(
    client: AsyncClient, ada: dict[str, str], content: bytes
) -> None:
    response = await upload(client, ada, content)
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == "text/plain"


async def in_pieces(pieces: list[bytes], boundary: str) -> AsyncIterator[bytes]:
    """A multipart body whose file arrives in exactly these pieces, one per chunk."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="notes.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    for piece in pieces:
        yield piece
    yield f"\r\n--{boundary}--\r\n".encode()


# Each markup once, cut where neither piece alone shows it.
SPLIT_MARKUP = [
    *((markup, 1) for markup in (b"<script>alert(1)", b"</x>", b"<!-- x", b"<?php")),
    *((b"+ADw-img src=x onerror=alert(1)", cut) for cut in (1, 2, 3)),
]


@pytest.mark.parametrize(
    ("markup", "cut"), SPLIT_MARKUP, ids=[f"{m[:cut]!r}|{m[cut:4]!r}" for m, cut in SPLIT_MARKUP]
)
async def test_markup_split_across_chunks_is_found(
    client: AsyncClient, ada: dict[str, str], markup: bytes, cut: int
) -> None:
    boundary = "split-markup-boundary"
    # The first piece alone decides the type; the markup straddles the next two.
    pieces = [LONG_TEXT + b"tail " + markup[:cut], markup[cut:] + b" and the rest\n"]
    response = await client.post(
        await files_path(client, ada),
        headers={**ada, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=in_pieces(pieces, boundary),
    )
    assert response.status_code == 415, response.text
    assert "The text contains markup" in response.json()["error"]["message"]
    assert await total_files(client, ada) == 0


async def test_text_refused_late_leaves_nothing_in_storage(
    client: AsyncClient, ada: dict[str, str], settings: Settings
) -> None:
    before = {path for path in settings.UPLOAD_DIR.rglob("*") if path.is_file()}
    # Well past the first bytes, so the file was already streaming into storage.
    response = await upload(client, ada, LONG_TEXT * 3000 + b"<script>")
    assert response.status_code == 415
    after = {path for path in settings.UPLOAD_DIR.rglob("*") if path.is_file()}
    assert after == before


@pytest.mark.parametrize(
    ("name", "content", "stored"),
    [
        ("x.png.php", PNG, "x_png.png"),
        ("shell.php", TEXT, "shell.txt"),
        ("x.html", TEXT, "x.txt"),
        ("run.sh", TEXT, "run.txt"),
        ("evil.php.", TEXT, "evil.txt"),  # Windows drops the trailing dot on save
        ("invoice.pdf.exe", PDF, "invoice_pdf.pdf"),
        ("avatar.png", GIF, "avatar.gif"),
        ("notes", TEXT, "notes.txt"),
        ("report.pdf", PDF, "report.pdf"),
        ("Holiday.JPEG", JPEG, "Holiday.JPEG"),
        ("table.csv", TEXT, "table.csv"),
        ("x" * 300 + ".php", TEXT, "x" * 251 + ".txt"),
    ],
)
async def test_the_stored_name_agrees_with_the_content(
    client: AsyncClient, ada: dict[str, str], name: str, content: bytes, stored: str
) -> None:
    response = await upload(client, ada, content, name=name, declared="application/x-php")
    assert response.status_code == 201, response.text
    assert response.json()["original_name"] == stored
    download = await client.get(
        f"{await files_path(client, ada)}/{response.json()['id']}/download", headers=ada
    )
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith(f'attachment; filename="{stored}"')


SAMPLES = [PNG, JPEG, GIF, PDF, TEXT, b"PK\x03\x04", b"\x1f\x8b\x08", b"RIFF\0\0\0\0WEBPVP8 "]
SAMPLES += [b"<html>", b"<svg>", b"<?xml?><feed/>", b"MZ\x90\x00" + bytes(600), b""]


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_detected_type_has_its_own_extension(sample: bytes) -> None:
    assert EXTENSIONS[detect_content_type(sample)]


async def test_markup_allowed_by_configuration_is_kept_as_such_and_sandboxed(
    settings: Settings,
) -> None:
    page = b"<!doctype html><script>alert(document.cookie)</script>"
    allowed = [*settings.ALLOWED_UPLOAD_TYPES, "text/html"]
    async with running_app(settings, ALLOWED_UPLOAD_TYPES=allowed) as (app, client):
        headers = await token_for(app, settings, "ada@example.com")
        response = await upload(client, headers, page, name="page.txt")
        assert response.status_code == 201, response.text
        assert response.json()["content_type"] == "text/html"
        assert response.json()["original_name"] == "page.html"
        download = await client.get(
            f"{await files_path(client, headers)}/{response.json()['id']}/download", headers=headers
        )
    assert download.content == page
    assert download.headers["content-type"].startswith("text/html")
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-security-policy"] == "default-src 'none'; sandbox"
