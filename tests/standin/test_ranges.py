"""Tests for standin/ranges.py: how the stand-in answers Range and If-Range."""

from __future__ import annotations

import pytest

from tokysnatcher.standin.ranges import answer_range, validators_for

V = validators_for("01.mp3", 1000)


@pytest.mark.parametrize(
    ("header", "status", "start", "stop", "content_range"),
    [
        (None, 200, 0, 1000, None),
        ("bytes=400-", 206, 400, 1000, "bytes 400-999/1000"),
        ("bytes=400-499", 206, 400, 500, "bytes 400-499/1000"),
        ("bytes=900-5000", 206, 900, 1000, "bytes 900-999/1000"),
        ("bytes=-100", 206, 900, 1000, "bytes 900-999/1000"),
        ("bytes=1000-", 416, 0, 0, "bytes */1000"),
        ("bytes=0-1,5-9", 200, 0, 1000, None),  # several ranges: ignored, as servers may
        ("items=1-", 200, 0, 1000, None),
    ],
)
def test_ranges_are_answered_as_rfc_9110_says(
    header: str | None, status: int, start: int, stop: int, content_range: str | None
) -> None:
    answer = answer_range(header, None, 1000, V)
    assert (answer.status, answer.start, answer.stop) == (status, start, stop)
    assert answer.headers.get("Content-Range") == content_range
    assert (answer.headers["ETag"], answer.headers["Accept-Ranges"]) == (V.etag, "bytes")


def test_if_range_must_name_this_version_strongly() -> None:
    for validator in (V.etag, V.last_modified):
        assert answer_range("bytes=10-", validator, 1000, V).status == 206
    changed = validators_for("01.mp3", 1000, epoch=1)
    assert changed.etag != V.etag
    assert changed.last_modified != V.last_modified
    for stale in (changed.etag, changed.last_modified, "W/" + V.etag):
        answer = answer_range("bytes=10-", stale, 1000, V)
        assert (answer.status, answer.start, answer.stop) == (200, 0, 1000)


def test_a_server_that_ignores_ranges_always_sends_the_whole_file() -> None:
    answer = answer_range("bytes=10-", V.etag, 1000, V, honour_ranges=False)
    assert (answer.status, answer.start, answer.stop) == (200, 0, 1000)
    assert "Accept-Ranges" not in answer.headers
