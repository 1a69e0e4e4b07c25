"""Joining m4a parts into an m4b, reading MP4 timing, and fetching covers: real ffmpeg, real HTTP.

Parts are made the way a download makes them (an MPEG-TS source through ``convert_command`` with
the ``m4a-part`` target), so the join is tested on the same kind of files it meets in a run.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import pytest

from helpers import NEEDS_SCRIPTS
from tokysnatcher.errors import FailureKind, FfmpegError
from tokysnatcher.ffmpeg.binary import FfmpegInfo, Tags, convert_command, resolve_ffmpeg
from tokysnatcher.ffmpeg.image import probe_image
from tokysnatcher.ffmpeg.run import run_ffmpeg
from tokysnatcher.m4b.book import join_parts
from tokysnatcher.m4b.cover import fetch_cover
from tokysnatcher.m4b.metadata import ffmetadata_text, read_metadata
from tokysnatcher.m4b.mp4 import read_audio_track
from tokysnatcher.net.http import Fetcher, make_session
from tokysnatcher.standin.catalog import BookSpec
from tokysnatcher.standin.media import MediaCache
from tokysnatcher.utils.filenames import book_file_name, chapter_ranges

REAL = imageio_ffmpeg.get_ffmpeg_exe()
RATE = 44100
FRAME = 1024


@pytest.fixture(scope="module")
def ff() -> FfmpegInfo:
    return resolve_ffmpeg(REAL)


def make_part(
    ff: FfmpegInfo,
    folder: Path,
    name: str,
    *,
    seconds: float,
    freq: int,
    noise: bool = False,
    mp3: bool = False,
    rate: int = RATE,
    layout: str = "mono",
) -> Path:
    """An m4a part as a download makes it: AAC (or MP3) in MPEG-TS, then ``m4a-part``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{name}.ts"
    graph = f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}"
    if noise:  # pink noise makes the encoder use perceptual noise substitution (PNS)
        graph += f"[s];anoisesrc=color=pink:amplitude=0.05:sample_rate={rate}:duration={seconds}"
        graph += "[n];[s][n]amix=inputs=2:normalize=0"
    graph += f",aformat=channel_layouts={layout}"
    codec = ["-c:a", "libmp3lame", "-q:a", "4"] if mp3 else ["-c:a", "aac", "-b:a", "64k"]
    if not mp3 and not noise:
        codec += ["-aac_pns", "0"]
    subprocess.run(
        [REAL, "-v", "error", "-y", "-f", "lavfi", "-i", graph, *codec, "-f", "mpegts", source],
        check=True,
        timeout=60,
    )
    part = folder / f"{name}.m4a"
    args = convert_command(
        ff,
        source=source,
        source_format="mpegts",
        output=part,
        target="m4a-part",
        codec_copy=not mp3,
        tags=Tags(title=name, album="Book", artist="Author"),
        source_codec="mp3" if mp3 else "aac",
    )
    run_ffmpeg(args, stall_timeout=30)
    source.unlink()
    return part


def pcm(path: Path) -> bytes:
    return subprocess.run(
        [REAL, "-v", "error", "-i", path, "-map", "0:a", "-f", "s16le", "-ac", "1", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def packet_hashes(path: Path) -> list[str]:
    """The MD5 of every audio packet, in order (stream copy: no decoding)."""
    out = subprocess.run(
        [REAL, "-v", "error", "-i", path, "-map", "0:a", "-c", "copy", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [line.split(",")[5].strip() for line in out.splitlines() if not line.startswith("#")]


def join(ff: FfmpegInfo, parts: list[tuple[Path, str]], folder: Path, **kwargs: object) -> Path:
    workdir = folder / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    output = workdir / "book.m4b"
    join_parts(
        ff,
        parts,
        tags=[("title", "Book"), ("artist", "Author")],
        output=output,
        workdir=workdir,
        stall_timeout=30,
        **kwargs,  # type: ignore[arg-type]
    )
    return output


# -- MP4 timing ------------------------------------------------------------------------------


def test_frames_of_a_stream_copy_part_are_its_decoded_length(
    ff: FfmpegInfo, tmp_path: Path
) -> None:
    part = make_part(ff, tmp_path, "01", seconds=2.5, freq=440)
    track = read_audio_track(part)
    assert (track.codec, track.timescale, track.sample_rate, track.channels) == (
        "mp4a",
        RATE,
        RATE,
        1,
    )
    assert track.frame_length == FRAME
    assert track.priming == 0
    assert track.frames * FRAME == len(pcm(part)) // 2


def test_an_aac_encode_of_mp3_carries_its_priming(ff: FfmpegInfo, tmp_path: Path) -> None:
    part = make_part(ff, tmp_path, "01", seconds=2.0, freq=440, mp3=True)
    track = read_audio_track(part)
    assert track.priming == FRAME  # the AAC encoder's delay, skipped by the part's edit list
    assert track.duration - track.priming == len(pcm(part)) // 2


@pytest.mark.parametrize("content", [b"", b"not an mp4 at all" * 10, b"\x00\x00\x00\x02moov"])
def test_unreadable_files_are_invalid_media(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.m4a"
    path.write_bytes(content)
    with pytest.raises(FfmpegError) as caught:
        read_audio_track(path)
    assert caught.value.kind is FailureKind.INVALID_MEDIA


# -- the join ------------------------------------------------------------------------------


def test_join_is_sample_exact_and_differs_only_in_the_first_frame_after_a_join(
    ff: FfmpegInfo, tmp_path: Path
) -> None:
    """Without PNS in the source, decoding the m4b equals decoding each part alone, except
    the first AAC frame of parts 2..N, which the decoder overlaps with the previous part."""
    lengths = [2.0, 3.3, 1.7]
    parts = [
        (make_part(ff, tmp_path, f"{n:02d}", seconds=s, freq=300 + 200 * n), f"Part {n}")
        for n, s in enumerate(lengths, start=1)
    ]
    m4b = join(ff, parts, tmp_path)

    sizes = [len(pcm(path)) // 2 for path, _ in parts]
    chapters = read_metadata(ff, m4b).chapters
    assert [c.title for c in chapters] == ["Part 1", "Part 2", "Part 3"]
    starts = [sum(sizes[:k]) / RATE for k in range(len(sizes))]
    assert [c.start for c in chapters] == pytest.approx(starts, abs=1e-4)
    assert [c.end - c.start for c in chapters] == pytest.approx([n / RATE for n in sizes], abs=1e-4)

    joined, alone = pcm(m4b), b"".join(pcm(path) for path, _ in parts)
    assert len(joined) == len(alone)
    samples_joined = memoryview(joined).cast("h")
    samples_alone = memoryview(alone).cast("h")
    differ = [i for i in range(len(samples_joined)) if samples_joined[i] != samples_alone[i]]
    joins = [sum(sizes[:k]) for k in range(1, len(sizes))]
    assert differ, "the decoder state at a join is expected to change the first frame"
    assert all(any(j <= i < j + FRAME for j in joins) for i in differ)


def test_join_keeps_every_packet_of_every_part(ff: FfmpegInfo, tmp_path: Path) -> None:
    parts = [
        (make_part(ff, tmp_path, f"{n:02d}", seconds=1.5, freq=500 * n, noise=True), f"P{n}")
        for n in (1, 2)
    ]
    m4b = join(ff, parts, tmp_path)
    assert packet_hashes(m4b) == packet_hashes(parts[0][0]) + packet_hashes(parts[1][0])
    track = read_audio_track(m4b)
    assert track.duration == track.frames * FRAME  # every frame on the exact timeline


def test_titles_and_tags_with_special_characters_survive(ff: FfmpegInfo, tmp_path: Path) -> None:
    titles = ["a=b; c#d \\ e", "Ελληνικά 🎧 [x]", "line\nbreak\tand\x07bell"]
    parts = [
        (make_part(ff, tmp_path, f"{n:02d}", seconds=1.0, freq=400 + n), title)
        for n, title in enumerate(titles, start=1)
    ]
    workdir = tmp_path / "work"
    workdir.mkdir()
    output = workdir / "book.m4b"
    tags = [("title", "Book = One; #1"), ("artist", "A \\ B"), ("media_type", "2")]
    join_parts(ff, parts, tags=tags, output=output, workdir=workdir, stall_timeout=30)
    found = read_metadata(ff, output)
    assert [c.title for c in found.chapters] == [titles[0], titles[1], "line break and bell"]
    assert found.tags["title"] == "Book = One; #1"
    assert found.tags["artist"] == "A \\ B"


def test_ffmetadata_escapes_every_special_character() -> None:
    text = ffmetadata_text([("title", "x=y;z#w\\v")], [(0, 10, "a\nb")], timebase=RATE)
    assert "title=x\\=y\\;z\\#w\\\\v" in text
    assert "title=a b" in text  # control characters never reach the file
    assert "TIMEBASE=1/44100" in text


def test_paths_with_quotes_percent_and_brackets(ff: FfmpegInfo, tmp_path: Path) -> None:
    folder = tmp_path / "It's 100% [Book] #1"
    parts = [
        (make_part(ff, folder, f"0{n} - Don't %d", seconds=1.0, freq=300 * n), f"C{n}")
        for n in (1, 2)
    ]
    m4b = join(ff, parts, folder)
    assert len(read_metadata(ff, m4b).chapters) == 2


def test_parts_of_different_formats_are_refused(ff: FfmpegInfo, tmp_path: Path) -> None:
    parts = [
        (make_part(ff, tmp_path, "01", seconds=1.0, freq=300), "One"),
        (make_part(ff, tmp_path, "02", seconds=1.0, freq=300, rate=22050, layout="stereo"), "Two"),
    ]
    with pytest.raises(FfmpegError) as caught:
        join(ff, parts, tmp_path)
    assert "differ in audio format" in caught.value.message
    assert "--format m4a" in caught.value.hint


@pytest.mark.parametrize(("suffix", "codec"), [("jpg", "mjpeg"), ("png", "png")])
def test_cover_is_attached(ff: FfmpegInfo, tmp_path: Path, suffix: str, codec: str) -> None:
    image = tmp_path / f"cover.{suffix}"
    subprocess.run(
        [REAL, "-v", "error", "-f", "lavfi", "-i", "color=c=teal:s=64x48", "-frames:v", "1", image],
        check=True,
        timeout=30,
    )
    parts = [(make_part(ff, tmp_path, "01", seconds=1.0, freq=300), "One")]
    m4b = join(ff, parts, tmp_path, cover=(image, "png" if suffix == "png" else "jpeg"))
    info = subprocess.run([REAL, "-hide_banner", "-i", m4b], capture_output=True, text=True).stderr
    video = [line for line in info.splitlines() if "Video:" in line]
    assert len(video) == 1
    assert f"Video: {codec}" in video[0]
    assert "64x48" in video[0]
    assert "(attached pic)" in video[0]
    assert "major_brand     : M4B" in info


# -- names -----------------------------------------------------------------------------------


def test_names() -> None:
    assert chapter_ranges([7, 1, 2, 3, 3]) == "1-3,7"
    assert book_file_name("The Book", [1, 2, 3], 3) == "The Book.m4b"
    assert book_file_name("The Book", [1, 2, 3, 7], 10) == "The Book (chapters 1-3,7).m4b"
    assert book_file_name("a/b: c?", [1], 1) == "a-b - c.m4b"
    assert book_file_name("..", [1], 1) == "Untitled.m4b"
    many = book_file_name("Long", list(range(1, 200, 2)), 200)
    assert many == "Long (chapters 100 of 200).m4b"
    long_name = book_file_name("word " * 100, [2], 3)
    assert long_name.endswith(" (chapters 2).m4b")
    assert len(long_name.encode()) <= 200


# -- covers ----------------------------------------------------------------------------------


@pytest.fixture
def cover_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on 127.0.0.1 serving the files of a folder."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def image(root: Path, name: str, codec: str, size: str = "40x30") -> None:
    source = ["-f", "lavfi", "-i", f"color=c=red:s={size}", "-frames:v", "1"]
    subprocess.run(
        [REAL, "-v", "error", *source, "-c:v", codec, "-f", "image2", root / name],
        check=True,
        timeout=30,
    )


def fetch(url: str, ff: FfmpegInfo, tmp_path: Path, **kwargs: int) -> tuple[object, list[str]]:
    messages: list[str] = []
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    fetcher = Fetcher(make_session(2), connect_timeout=2, stall_timeout=2, stop=threading.Event())
    cover = fetch_cover(
        url,
        fetcher,
        ff,
        workdir,
        log=lambda message, level: messages.append(f"{level}: {message}"),
        **kwargs,
    )
    return cover, messages


@pytest.mark.parametrize(
    ("name", "codec", "kept_as"),
    [("c.jpg", "mjpeg", "jpeg"), ("c.png", "png", "png"), ("c.gif", "gif", "jpeg")],
)
def test_cover_formats(
    cover_server: tuple[str, Path],
    ff: FfmpegInfo,
    tmp_path: Path,
    name: str,
    codec: str,
    kept_as: str,
) -> None:
    base, root = cover_server
    image(root, name, codec)
    cover, messages = fetch(f"{base}/{name}", ff, tmp_path)
    assert cover is not None, messages
    assert cover.format == kept_as  # type: ignore[attr-defined]
    assert (cover.width, cover.height) == (40, 30)  # type: ignore[attr-defined]
    assert not [m for m in messages if m.startswith("warning")]


@pytest.mark.parametrize(
    ("name", "content", "path", "limit", "expected"),
    [
        ("text.jpg", b"<html>not found</html>", "text.jpg", None, "not a readable image"),
        ("fake.jpg", b"\xff\xd8\xff" + b"\x00" * 200, "fake.jpg", None, "not a readable image"),
        ("big.jpg", None, "big.jpg", 500, "limit"),
        ("x.jpg", None, "missing.jpg", None, "HTTP 404"),
    ],
    ids=["html", "jpeg-magic-only", "over-limit", "not-found"],
)
def test_bad_covers_are_a_warning(
    cover_server: tuple[str, Path],
    ff: FfmpegInfo,
    tmp_path: Path,
    name: str,
    content: bytes | None,
    path: str,
    limit: int | None,
    expected: str,
) -> None:
    base, root = cover_server
    if content is None:
        image(root, name, "mjpeg", size="400x400")
    else:
        (root / name).write_bytes(content)
    cover, messages = fetch(f"{base}/{path}", ff, tmp_path, **({"limit": limit} if limit else {}))
    assert cover is None
    assert any(m.startswith("warning: cover not used") and expected in m for m in messages), (
        messages
    )
    assert not (tmp_path / "work" / "cover.download").exists()


@NEEDS_SCRIPTS
def test_a_decompression_bomb_is_refused_from_its_header_without_decoding(
    cover_server: tuple[str, Path], tmp_path: Path
) -> None:
    """A 750 KB PNG declaring 16000x16000 pixels would take ~800 MB to decode: never decoded."""
    base, root = cover_server
    bomb = MediaCache(tmp_path / "cache", REAL).cover(
        BookSpec(slug="bomb", title="Bomb", cover=True, huge_cover=True)
    )
    (root / "bomb.png").write_bytes(bomb.read_bytes())
    calls = tmp_path / "ffmpeg-calls"
    spy = tmp_path / "ffmpeg"  # any run of ffmpeg on the cover would be recorded here
    spy.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    spy.chmod(0o755)
    cover, messages = fetch(f"{base}/bomb.png", FfmpegInfo(str(spy), "spy", "option"), tmp_path)
    assert cover is None
    assert messages == [
        "warning: cover not used: 16000x16000 pixels is too large for a cover "
        "(at most 10000 pixels a side and 25 megapixels); not decoded"
    ]
    assert not calls.exists()
    assert not list((tmp_path / "work").iterdir())


def test_ffmpeg_refuses_more_pixels_than_the_bound_even_if_asked(
    ff: FfmpegInfo, tmp_path: Path
) -> None:
    """Defence in depth: were a header to pass the check, the decoder still caps pixels."""
    image(tmp_path, "c.png", "png", size="400x300")
    assert probe_image(ff, tmp_path / "c.png", max_pixels=200_000).width == 400
    with pytest.raises(FfmpegError, match="not a readable image"):
        probe_image(ff, tmp_path / "c.png", max_pixels=100_000)


def test_cover_url_must_be_http(ff: FfmpegInfo, tmp_path: Path) -> None:
    cover, messages = fetch("file:///etc/passwd", ff, tmp_path)
    assert cover is None
    assert "not an http(s) URL" in messages[0]
