"""Looped tracks: long media made cheaply by repeating a short clip, still one valid stream."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import imageio_ffmpeg
import pytest

from tokysnatcher.standin import BookSpec, StandinSite, TrackKind, TrackSpec, make_book
from tokysnatcher.standin.media import MediaCache

from .support import BookClient

OpenBook = Callable[[StandinSite, str], BookClient]
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SECONDS = 31.0
SEGMENT = 2.0
BYTES_PER_SECOND = 44100 * 2  # mono s16le at the stand-in's sample rate


def decoded_seconds(source: Path) -> float:
    """Decode all of ``source``; fail on any decode error; its length in seconds."""
    done = subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(source), "-f", "s16le", "-ac", "1", "-"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""  # no corrupt frame or timestamp complaint at a loop boundary
    return len(done.stdout) / BYTES_PER_SECOND


@pytest.fixture(scope="module")
def looped_site() -> Iterator[StandinSite]:
    """Two HLS chapters and one direct MP3 track, each looping a 4 s clip up to 31 s."""
    hls = make_book(
        "looped",
        title="Looped",
        chapters=2,
        chapter_seconds=SECONDS,
        segment_seconds=SEGMENT,
        loop_seconds=4.0,
    )
    direct = BookSpec(
        slug="looped-direct",
        title="Looped Direct",
        tracks=(TrackSpec(title="Only", seconds=SECONDS, kind=TrackKind.DIRECT, loop_seconds=4.0),),
    )
    with StandinSite(catalog={hls.slug: hls, direct.slug: direct}) as site:
        yield site


def test_looped_chapter_has_the_requested_length_and_decodes(
    looped_site: StandinSite, open_book: OpenBook
) -> None:
    book = open_book(looped_site, "looped")
    playlist = book.get(book.playlist_path(0)).text
    lines = playlist.splitlines()
    listed = sum(float(line[8:].split(",")[0]) for line in lines if line.startswith("#EXTINF:"))
    names = [line for line in lines if line and not line.startswith("#")]

    served = b"".join(book.get(book.segment_path(0, n)).content for n in range(len(names)))

    assert abs(listed - SECONDS) <= SEGMENT
    assert len(names) == pytest.approx(SECONDS / SEGMENT, abs=1)
    assert served == looped_site.source_media("looped", 0).read_bytes()
    assert abs(decoded_seconds(looped_site.source_media("looped", 0)) - SECONDS) <= SEGMENT


def test_looped_chapters_keep_their_own_sound(looped_site: StandinSite) -> None:
    first = looped_site.source_media("looped", 0).read_bytes()
    second = looped_site.source_media("looped", 1).read_bytes()

    assert len(first) == pytest.approx(len(second), rel=0.05)
    assert first != second


def test_looped_direct_track_is_a_whole_mp3(looped_site: StandinSite) -> None:
    source = looped_site.source_media("looped-direct", 0)

    assert source.suffix == ".mp3"
    assert abs(decoded_seconds(source) - SECONDS) <= SEGMENT


def test_looped_media_is_cached_apart_from_encoded_media(tmp_path: Path) -> None:
    def book(loop: float | None) -> dict[str, BookSpec]:
        return {"c": make_book("c", title="C", chapters=1, chapter_seconds=6.0, loop_seconds=loop)}

    encoded = MediaCache(tmp_path).prepare(book(None))[("c", 0)]
    looped = MediaCache(tmp_path).prepare(book(2.0))[("c", 0)]

    assert looped.source != encoded.source
    assert not list(tmp_path.rglob("clip.*"))  # the clip is a by-product, not kept
    assert not list(tmp_path.rglob(".tmp-*"))


def test_loop_must_fit_in_the_track() -> None:
    with pytest.raises(ValueError, match="loop_seconds"):
        TrackSpec(title="t", seconds=4.0, loop_seconds=5.0)
    with pytest.raises(ValueError, match="loop_seconds"):
        TrackSpec(title="t", seconds=4.0, loop_seconds=0.1)


def test_a_book_with_shared_media_is_generated_once(tmp_path: Path) -> None:
    """Thousands of tracks, one ffmpeg generation: every track serves the same media."""
    book = make_book("s", title="S", chapters=2000, chapter_seconds=1.0, shared_media=True)
    media = MediaCache(tmp_path).prepare({"s": book})
    assert len(media) == 2000
    assert len({track.source for track in media.values()}) == 1
    assert len(list(tmp_path.rglob("meta.json"))) == 1
    distinct = make_book("d", title="D", chapters=2, chapter_seconds=1.0)
    assert len({t.source for t in MediaCache(tmp_path).prepare({"d": distinct}).values()}) == 2
