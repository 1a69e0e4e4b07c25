"""Redaction: what a crash report may not carry is taken out, the rest stays readable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokysnatcher.diagnostics.redact import REMOVED, redact, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{'X-Audiobook-Id': 'ab1', 'X-Stream-Token': 'st-Secret_1-x'}",
            f"{{'X-Audiobook-Id': 'ab1', 'X-Stream-Token': '{REMOVED}'}}",
        ),
        ('{"postDetailToken": "pdt-9", "title": "A"}', f'{{"postDetailToken": "{REMOVED}", '),
        ("Authorization: Bearer abc.def", f"Authorization: {REMOVED}"),
        ("Proxy-Authorization: Basic QQ==", f"Proxy-Authorization: {REMOVED}"),
        ("password=hunter2&user=me", f"password={REMOVED}&user=me"),
        ("author=Ada Quill", "author=Ada Quill"),  # an author is not a secret
        ("see https://u:p@host:8/a/b?token=zz#f now", f"see https://host:8/a/b?{REMOVED} now"),
    ],
)
def test_secrets_are_removed(text: str, expected: str) -> None:
    assert redact(text).startswith(expected)


def test_the_home_folder_becomes_a_tilde() -> None:
    home = str(Path.home())
    assert redact(f"File {home}/lib/x.py", home=True) == "File ~/lib/x.py"
    assert redact(f"File {home}/lib/x.py", home=False) == f"File {home}/lib/x.py"


def test_a_url_keeps_its_host_and_path() -> None:
    assert redact_url("http://[::1]:8080/api/v1?x=1") == f"http://[::1]:8080/api/v1?{REMOVED}"
    assert redact_url("https://tokybook.com/post/a") == "https://tokybook.com/post/a"
