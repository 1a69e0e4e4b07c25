"""The engine downloads a book through the ``Source`` protocol alone: a second source plugs in.

A fake site on 127.0.0.1 serves plain MP3 files (no HLS, no tokybook API) and wants a bearer
token that it has already expired; the engine (``download.run``) resolves, downloads, renews the
token once on 401 and writes the book, knowing nothing of the site but the protocol's records.
"""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tokysnatcher.config.settings import OutputFormat, Settings
from tokysnatcher.download.events import RequestRetried
from tokysnatcher.download.plan import prepare
from tokysnatcher.download.results import RunResult
from tokysnatcher.download.run import execute, open_run, open_runtime, run_state
from tokysnatcher.download.state import Chapter, RunState
from tokysnatcher.errors import UsageError
from tokysnatcher.ffmpeg.binary import resolve_ffmpeg
from tokysnatcher.sources.source import (
    Book,
    MediaKind,
    RequestHeaders,
    SearchPage,
    Track,
    TrackList,
)


class FileSite(http.server.BaseHTTPRequestHandler):
    """``GET /<name>.mp3`` with ``Authorization: Bearer <valid>``; anything else is refused."""

    files: dict[str, bytes]
    valid = "token-1"
    refused = 0

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if self.headers.get("Authorization") != f"Bearer {self.valid}":
            type(self).refused += 1
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class FakeSource:
    """A site with two chapters as direct MP3 files and a token that must be renewed."""

    renewed_message = "fake token renewed"

    def __init__(self, base_url: str, listed: dict[int, dict[str, Any]] | None = None) -> None:
        self.base_url = base_url
        self.listed = listed or {}  # what the host lists for a part: size, md5, sha1
        self.generation = 0
        self.renewals = 0

    def book_slug(self, ref: str) -> str:
        if ref != "fake-book":
            raise UsageError(f"not a fake book: {ref!r}")
        return ref

    def resolve(self, slug: str) -> tuple[Book, TrackList]:
        book = Book(
            source="fake", slug=slug, title="Fake Book", author="Nobody", source_url=f"fake:{slug}"
        )
        tracks = tuple(
            Track(
                index=n,
                title=f"Part {n}",
                url=f"{self.base_url}/part{n}.mp3",
                kind=MediaKind.FILE,
                duration=2.0,
                **self.listed.get(n, {}),
            )
            for n in (1, 2)
        )
        return book, TrackList(tracks=tracks, skipped=("A missing part",))

    def headers(self, url: str) -> RequestHeaders:
        return RequestHeaders({"Authorization": f"Bearer token-{self.generation}"}, self.generation)

    def headers_generation(self) -> int:
        return self.generation

    def renew_headers(self, seen_generation: int) -> int:
        if seen_generation == self.generation:
            self.generation += 1
            self.renewals += 1
        return self.generation

    def search(self, query: str, *, offset: int, limit: int) -> SearchPage:
        return SearchPage(results=(), total=0, offset=offset)


class Quiet:
    def start(self, state: RunState) -> None:
        pass

    def event(self, chapter: Chapter) -> None:
        pass

    def retried(self, chapter: Chapter, event: RequestRetried) -> None:
        pass

    def controls(self, post: object) -> None:
        pass

    def stop(self) -> None:
        pass


@pytest.fixture
def file_site(tmp_path: Path, ffmpeg_exe: str) -> Iterator[str]:
    files = {}
    for n in (1, 2):
        mp3 = tmp_path / f"part{n}.mp3"
        tone = f"sine=frequency={300 * n}:d=2"
        subprocess.run(
            [ffmpeg_exe, "-v", "error", "-f", "lavfi", "-i", tone, "-c:a", "libmp3lame", str(mp3)],
            check=True,
            timeout=60,
        )
        files[f"/part{n}.mp3"] = mp3.read_bytes()
    FileSite.files = files
    FileSite.refused = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileSite)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_direct_file_source_downloads_through_the_engine(
    file_site: str, tmp_path: Path, ffmpeg_exe: str
) -> None:
    source = FakeSource(file_site)
    settings = Settings(directory=tmp_path / "lib", output_format=OutputFormat.MP3, jobs=1)
    runtime = replace(open_runtime(settings), source=source)  # the engine's only site: ours
    try:
        plan = prepare("fake-book", settings, source)
        assert plan.warnings == ["track without audio skipped: A missing part"]
        state = run_state(plan, settings)
        with open_run(plan, settings) as manifest:
            ffmpeg = resolve_ffmpeg(ffmpeg_exe)
            result = execute(plan, settings, runtime, ffmpeg, manifest, state, Quiet())
    finally:
        runtime.close()
    assert result.ok
    folder = tmp_path / "lib" / "Nobody" / "Fake Book"
    assert sorted(p.name for p in folder.glob("*.mp3")) == ["01 - Part 1.mp3", "02 - Part 2.mp3"]
    # Both chapters met the expired token; one renewal served them.
    assert FileSite.refused >= 1
    assert source.renewals == 1


def test_a_file_that_differs_from_what_the_host_lists_is_retried_then_reported(
    file_site: str, tmp_path: Path, ffmpeg_exe: str
) -> None:
    # Part 1 matches its listed size, md5 and sha1; part 2's md5 is another file's.
    body = FileSite.files["/part1.mp3"]
    listed: dict[int, dict[str, Any]] = {
        1: {
            "size": len(body),
            "md5": hashlib.md5(body).hexdigest(),
            "sha1": hashlib.sha1(body).hexdigest().upper(),
        },
        2: {"md5": hashlib.md5(body).hexdigest()},
    }
    result = _run(FakeSource(file_site, listed), tmp_path, ffmpeg_exe)
    one, two = result.chapters
    assert one.status == "complete"
    assert (two.status, two.kind, two.attempts) == ("failed", "invalid_media", 2)
    assert two.message == "chapter 2: md5 differs from the host's"
    folder = tmp_path / "lib" / "Nobody" / "Fake Book"
    assert sorted(p.name for p in folder.glob("*.mp3")) == ["01 - Part 1.mp3"]
    assert not list(folder.glob(".tokysnatcher/*/source.mp3"))


def test_a_file_of_another_size_than_listed_is_never_kept(
    file_site: str, tmp_path: Path, ffmpeg_exe: str
) -> None:
    size = len(FileSite.files["/part2.mp3"])
    result = _run(FakeSource(file_site, {2: {"size": size + 1}}), tmp_path, ffmpeg_exe)
    two = result.chapters[1]
    assert (two.status, two.kind) == ("failed", "invalid_media")
    assert two.message == f"chapter 2: size {size} B, the host lists {size + 1} B"


def _run(source: FakeSource, tmp_path: Path, ffmpeg_exe: str) -> RunResult:
    settings = Settings(
        directory=tmp_path / "lib",
        output_format=OutputFormat.MP3,
        jobs=1,
        max_retries=1,
        retry_delay=0.0,
    )
    runtime = replace(open_runtime(settings), source=source)
    try:
        plan = prepare("fake-book", settings, source)
        with open_run(plan, settings) as manifest:
            ffmpeg = resolve_ffmpeg(ffmpeg_exe)
            state = run_state(plan, settings)
            return execute(plan, settings, runtime, ffmpeg, manifest, state, Quiet())
    finally:
        runtime.close()
