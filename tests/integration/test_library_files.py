"""What players read: sidecar files beside the audio, tags and the embedded cover (ISSUE 13).

A small site on 127.0.0.1 serves two MP3 chapters and a JPEG cover; a source with every detail a
player shows (series, description with markup, language, genres, narrator) resolves the book.
The run is the engine's own (plan, run, m4b join), as in ``tests/download/test_fake_source.py``.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from book_support import manifest_of
from helpers import FFMPEG, metadata
from tokysnatcher.actions.download import finish_m4b
from tokysnatcher.config.settings import OutputFormat, Settings, Verbosity
from tokysnatcher.download.plan import prepare
from tokysnatcher.download.run import execute, open_run, open_runtime, run_state
from tokysnatcher.ffmpeg.binary import resolve_ffmpeg
from tokysnatcher.library.verify import verify_folder
from tokysnatcher.sources.source import (
    Book,
    MediaKind,
    RequestHeaders,
    SearchPage,
    Track,
    TrackList,
)
from tokysnatcher.ui.output import Output
from tokysnatcher.utils.atomic import LOCK_NAME, sha256_file

pytestmark = pytest.mark.integration

DESCRIPTION = 'A <b>bold</b> tale & "more" ]]>\nSecond line\x01.'
DC = "{http://purl.org/dc/elements/1.1/}"
OPF = "{http://www.idpf.org/2007/opf}"


class RichSource:
    """A book with every detail players show, two MP3 chapters and a cover."""

    def __init__(self, base_url: str, **book: object) -> None:
        self.base_url = base_url
        self.book = book

    def book_slug(self, ref: str) -> str:
        return ref

    def resolve(self, slug: str) -> tuple[Book, TrackList]:
        details: dict[str, object] = {
            "source": "rich",
            "slug": slug,
            "title": "The Lantern",
            "author": "Ida Penn",
            "source_url": f"{self.base_url}/book/{slug}",
            "narrator": "Oz Reader",
            "cover_url": f"{self.base_url}/cover.jpg",
            "year": 1911,
            "description": DESCRIPTION,
            "language": "English",
            "genres": ("Fiction", "Mystery"),
            "series": "Lights",
            "series_index": "2",
        }
        details.update(self.book)
        tracks = tuple(
            Track(index=n, title=f"Part {n}", url=f"{self.base_url}/p{n}.mp3", kind=MediaKind.FILE)
            for n in (1, 2)
        )
        return Book(**details), TrackList(tracks=tracks)  # type: ignore[arg-type]

    def headers(self, url: str) -> RequestHeaders:
        return RequestHeaders({}, 0)

    def headers_generation(self) -> int:
        return 0

    def renew_headers(self, seen_generation: int) -> int:
        return 0

    def search(self, query: str, *, offset: int, limit: int) -> SearchPage:
        return SearchPage(results=(), total=0, offset=offset)


class Quietly(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    served = tmp_path_factory.mktemp("rich-site")
    for n in (1, 2):
        tone = f"sine=frequency={300 * n}:d=2"
        subprocess.run(
            [FFMPEG, "-v", "error", "-f", "lavfi", "-i", tone, "-q:a", "6", served / f"p{n}.mp3"],
            check=True,
            timeout=60,
        )
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=teal:s=64x64:d=0.04",
            served / "cover.jpg",
        ],
        check=True,
        timeout=60,
    )
    handler = functools.partial(Quietly, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def download(site: str, root: Path, fmt: OutputFormat, **changes: object) -> Path:
    """Download the rich book into ``root`` through the engine; its folder."""
    book = {k: v for k, v in changes.items() if k in Book.__dataclass_fields__}
    options = {k: v for k, v in changes.items() if k not in book}
    source = RichSource(site, **book)
    settings = Settings(directory=root, output_format=fmt, jobs=2, **options)  # type: ignore[arg-type]
    runtime = replace(open_runtime(settings), source=source)
    try:
        plan = prepare("lantern", settings, source)
        state = run_state(plan, settings)
        ffmpeg = resolve_ffmpeg(FFMPEG)
        with open_run(plan, settings) as manifest:
            quiet = Output.for_terminal(Verbosity.QUIET).reporter(0)
            result = execute(plan, settings, runtime, ffmpeg, manifest, state, quiet)
            assert result.ok
            if fmt is OutputFormat.M4B:
                finish_m4b(plan, settings, ffmpeg, runtime, manifest, state)
    finally:
        runtime.close()
    return plan.folder


def has_cover(path: Path) -> bool:
    info = subprocess.run([FFMPEG, "-hide_banner", "-i", path], capture_output=True, text=True)
    return any("attached pic" in line for line in info.stderr.splitlines())


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_sidecars_tags_and_the_cover_in_every_format(
    site: str, tmp_path: Path, fmt: OutputFormat
) -> None:
    folder = download(site, tmp_path, fmt)
    assert folder == tmp_path / "Ida Penn" / "Lights" / "The Lantern"
    assert (folder / "cover.jpg").read_bytes().startswith(b"\xff\xd8\xff")
    assert (folder / "desc.txt").read_text("utf-8") == DESCRIPTION.replace("\x01", " ") + "\n"
    assert (folder / "reader.txt").read_text("utf-8") == "Oz Reader\n"

    opf = ET.parse(folder / "metadata.opf").getroot()
    meta = opf.find(f"{OPF}metadata")
    assert meta is not None
    text = {el.tag.removeprefix(DC): el.text for el in meta if el.tag.startswith(DC)}
    assert text["title"] == "The Lantern"
    assert text["description"] == DESCRIPTION.replace("\x01", "")
    assert (text["language"], text["date"], text["identifier"]) == ("English", "1911", "lantern")
    creators = {el.get(f"{OPF}role"): el.text for el in meta.iter(f"{DC}creator")}
    assert creators == {"aut": "Ida Penn", "nrt": "Oz Reader"}
    assert [el.text for el in meta.iter(f"{DC}subject")] == ["Fiction", "Mystery"]
    series = {el.get("name"): el.get("content") for el in meta.iter(f"{OPF}meta")}
    assert series == {"calibre:series": "Lights", "calibre:series_index": "2"}

    data = manifest_of(folder)
    assert (data["book"]["source"], data["book"]["id"]) == ("rich", "lantern")
    assert sorted(data["sidecars"]) == ["cover.jpg", "desc.txt", "metadata.opf", "reader.txt"]
    for name, entry in data["sidecars"].items():
        assert (entry["size"], entry["sha256"]) == sha256_file(folder / name)

    if fmt is OutputFormat.M4B:
        files = [folder / "The Lantern.m4b"]
    else:
        files = sorted(folder.glob(f"*.{fmt}"))
        for path in files:  # the hash recorded is the final, tagged file's
            entry = data["chapters"][path.name]
            assert (entry["size"], entry["sha256"]) == sha256_file(path)
    for number, path in enumerate(files, 1):
        tags = metadata(path)
        assert (tags["album"], tags["artist"], tags["album_artist"]) == (
            "The Lantern",
            "Ida Penn",
            "Ida Penn",
        )
        genre = tags["genre"].replace("\\;", ";")  # ffmetadata escapes ;
        assert (tags["composer"], genre, tags["date"]) == (
            "Oz Reader",
            "Fiction; Mystery",
            "1911",
        )
        assert tags["description"].startswith("A <b>bold</b> tale")
        assert tags["comment"].startswith("A <b>bold</b> tale")
        if fmt is not OutputFormat.M4B:
            assert (tags["title"], tags["track"]) == (f"Part {number}", f"{number}/2")
        assert has_cover(path), path

    report = verify_folder(folder)
    assert report.clean
    assert sum(row.is_sidecar for row in report.rows) == 4


def test_a_damaged_sidecar_is_reported_and_the_next_run_writes_it(
    site: str, tmp_path: Path
) -> None:
    folder = download(site, tmp_path, OutputFormat.MP3)
    (folder / "desc.txt").write_text("changed")
    (folder / "cover.jpg").unlink()
    report = verify_folder(folder)
    assert not report.clean
    bad = {row.name: row.detail for row in report.problems}
    assert bad == {
        "cover.jpg": "file missing",
        "desc.txt": "size differs from the manifest",
    }
    download(site, tmp_path, OutputFormat.MP3)  # a resume: every chapter is skipped
    assert (folder / "desc.txt").read_text("utf-8").startswith("A <b>bold</b>")
    assert (folder / "cover.jpg").is_file()
    assert verify_folder(folder).clean


def test_no_sidecars_and_only_those_with_content(site: str, tmp_path: Path) -> None:
    bare = download(site, tmp_path / "a", OutputFormat.MP3, no_sidecars=True)
    assert sorted(p.name for p in bare.iterdir() if p.name != LOCK_NAME) == [
        ".tokysnatcher.json",
        "01 - Part 1.mp3",
        "02 - Part 2.mp3",
    ]
    assert "sidecars" not in manifest_of(bare)
    assert has_cover(bare / "01 - Part 1.mp3"), "the cover is still embedded"

    plain = download(
        site, tmp_path / "b", OutputFormat.MP3, description=None, narrator=None, series=None
    )
    assert plain == tmp_path / "b" / "Ida Penn" / "The Lantern"
    assert sorted(manifest_of(plain)["sidecars"]) == ["cover.jpg", "metadata.opf"]

    no_cover = download(site, tmp_path / "c", OutputFormat.M4A, no_cover=True)
    assert not (no_cover / "cover.jpg").exists()
    assert not has_cover(no_cover / "01 - Part 1.m4a")
