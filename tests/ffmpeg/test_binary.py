"""ffmpeg resolution, commands, probing and the watchdog, against the real bundled ffmpeg.

Misbehaving ffmpegs are played by tests/fakes/fake_ffmpeg.py (mode from FAKE_FFMPEG_MODE).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import psutil
import pytest

from helpers import NEEDS_POSIX_KERNEL, NEEDS_SCRIPTS, NEEDS_SIGNALS, decoded_md5
from tokysnatcher.errors import (
    DiskError,
    ExitCode,
    FailureKind,
    FfmpegError,
    FfmpegNotFoundError,
)
from tokysnatcher.ffmpeg import processes
from tokysnatcher.ffmpeg.binary import (
    ENV_VAR,
    FfmpegInfo,
    Tags,
    Target,
    clear_resolution_cache,
    convert_command,
    resolve_ffmpeg,
    track_tag,
)
from tokysnatcher.ffmpeg.image import image_to_jpeg
from tokysnatcher.ffmpeg.probe import audio_seconds, decode_check, probe
from tokysnatcher.ffmpeg.progress import ProgressSample
from tokysnatcher.ffmpeg.run import disk_refusal, run_ffmpeg

FAKE = Path(__file__).parent.parent / "fakes" / "fake_ffmpeg.py"
REAL = imageio_ffmpeg.get_ffmpeg_exe()
SECONDS = 3.0
TAGS = Tags(
    title="Part 1: The Beginning",
    album="A Book",
    artist="Some Author",
    composer="A Narrator",
    track=track_tag(1, 12),
    date="2020",
    comment="from tokybook",
)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_resolution_cache()
    yield
    clear_resolution_cache()


@pytest.fixture(scope="module")
def ff() -> FfmpegInfo:
    return resolve_ffmpeg(REAL, env={})


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short AAC-in-TS and MP3-in-TS chapters, plus a corrupted and a garbage file."""
    root = tmp_path_factory.mktemp("media")
    files = {"aac": root / "aac.ts", "mp3": root / "mp3.ts"}
    for codec, path in (("aac", files["aac"]), ("libmp3lame", files["mp3"])):
        subprocess.run(
            [
                *(REAL, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi"),
                *("-i", f"sine=frequency=440:duration={SECONDS}", "-c:a", codec, "-b:a", "64k"),
                *("-f", "mpegts", "-y", str(path)),
            ],
            check=True,
            timeout=30,
        )
    rng = random.Random(7)
    damaged = bytearray(files["aac"].read_bytes())
    damaged[10_000:16_000] = rng.randbytes(6_000)
    files["damaged"] = root / "damaged.ts"
    files["damaged"].write_bytes(bytes(damaged))
    files["garbage"] = root / "garbage.ts"
    files["garbage"].write_bytes(rng.randbytes(50_000))
    return files


def executable(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(0o755)
    return path


def fake_binary(tmp_path: Path, name: str = "ffmpeg") -> Path:
    """The fake as a directly executable file, whatever python3 is on PATH."""
    return executable(tmp_path / name, f"#!{sys.executable}\n" + FAKE.read_text())


def read_tags(path: Path) -> dict[str, str]:
    out = subprocess.run(
        [REAL, "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    return dict(line.split("=", 1) for line in out.splitlines()[1:] if "=" in line)


def chunks_of(path: Path, size: int = 4096) -> Iterator[bytes]:
    data = path.read_bytes()
    for start in range(0, len(data), size):
        yield data[start : start + size]


def assert_gone(pid: int) -> None:
    assert not psutil.pid_exists(pid), f"process {pid} is still alive"
    assert all(p.pid != pid for p in processes.registry().live())


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


def test_explicit_path_wins_over_env(tmp_path: Path) -> None:
    info = resolve_ffmpeg(REAL, env={ENV_VAR: str(tmp_path / "nope"), "PATH": ""})
    assert info.path == REAL
    assert info.source == "option"
    assert info.version[0].isalnum()


def test_env_variable(tmp_path: Path) -> None:
    info = resolve_ffmpeg(None, env={ENV_VAR: REAL, "PATH": str(tmp_path)})
    assert (info.path, info.source) == (REAL, "env")


@NEEDS_SCRIPTS
def test_ffmpeg_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ffmpeg").symlink_to(REAL)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV_VAR, raising=False)
    info = resolve_ffmpeg(None)
    assert (info.path, info.source) == (str(tmp_path / "ffmpeg"), "path")


@NEEDS_SCRIPTS
def test_bare_name_is_looked_up_on_path(tmp_path: Path) -> None:
    (tmp_path / "ffmpeg7").symlink_to(REAL)
    info = resolve_ffmpeg("ffmpeg7", env={"PATH": str(tmp_path)})
    assert (info.path, info.source) == (str(tmp_path / "ffmpeg7"), "option")


def test_bundled_fallback_when_path_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV_VAR, raising=False)
    info = resolve_ffmpeg(None)
    assert (info.path, info.source) == (REAL, "bundled")


@NEEDS_SCRIPTS
def test_result_is_cached(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path)
    first = resolve_ffmpeg(str(binary), env={})
    binary.unlink()  # a second check would now fail
    assert resolve_ffmpeg(str(binary), env={}) is first
    assert first.version == "0.0-fake"


@NEEDS_SCRIPTS
@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        ("missing", "not found"),
        ("directory", "is a directory"),
        ("not-executable", "not executable"),
        ("no-shebang", "not an ffmpeg binary (cannot run it"),
        ("version-garbage", "not an ffmpeg binary (-version failed)"),
        ("version-hang", "not an ffmpeg binary (-version did not finish within 0.5 s)"),
    ],
)
@pytest.mark.parametrize("via", ["option", "env"])
def test_bad_choice_fails_in_one_line_without_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str, problem: str, via: str
) -> None:
    target = tmp_path / "bin" / "ffmpeg"
    target.parent.mkdir()
    pidfile = tmp_path / "pid"
    if setup == "directory":
        target.mkdir()
    elif setup == "not-executable":
        target.write_text("#!/bin/sh\n")
    elif setup == "no-shebang":
        executable(target, "this is not a program\n")
    elif setup.startswith("version-"):
        fake_binary(target.parent)
        monkeypatch.setenv("FAKE_FFMPEG_MODE", setup)
        monkeypatch.setenv("FAKE_FFMPEG_PIDFILE", str(pidfile))
    env = {"PATH": str(Path(REAL).parent)}  # a good ffmpeg is around: it must not be used
    explicit = str(target) if via == "option" else None
    if via == "env":
        env[ENV_VAR] = str(target)

    started = time.monotonic()
    with pytest.raises(FfmpegNotFoundError) as caught:
        resolve_ffmpeg(explicit, env=env, timeout=0.5)

    assert time.monotonic() - started < 5
    message = str(caught.value)
    label = f"--ffmpeg {target}" if via == "option" else f"{ENV_VAR}={target}"
    assert message.startswith(f"{label}: {problem}")
    assert "\n" not in message
    assert caught.value.exit_code == ExitCode.USAGE
    if pidfile.exists():  # the hanging -version child was killed and reaped
        assert_gone(int(pidfile.read_text()))


@NEEDS_SCRIPTS
def test_broken_ffmpeg_on_path_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_binary(tmp_path)
    monkeypatch.setenv("FAKE_FFMPEG_MODE", "version-garbage")
    with pytest.raises(FfmpegNotFoundError, match=r"^ffmpeg on PATH \(.*\): not an ffmpeg"):
        resolve_ffmpeg(None, env={"PATH": str(tmp_path)})


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def test_command_shape(ff: FfmpegInfo, tmp_path: Path) -> None:
    out = tmp_path / "01 - x.m4a.part"
    args = convert_command(
        ff,
        source=tmp_path / "in.ts",
        source_format="mpegts",
        output=out,
        target="m4a",
        codec_copy=True,
        tags=TAGS,
        source_codec="aac",
    )
    assert args[0] == ff.path
    assert args[-1] == f"file:{out}"
    joined = " ".join(args)
    for option in (
        "-hide_banner -nostdin",
        "-loglevel error",
        "-progress pipe:1",
        "-nostats",
        "-protocol_whitelist file,pipe -i",
        "-map 0:a:0",
        "-map_metadata -1",
        "-c:a copy",
        "-bsf:a aac_adtstoasc",
        "-movflags +faststart",
        "-y",
    ):
        assert option in joined
    assert args.index("-protocol_whitelist") < args.index("-i")

    piped = convert_command(
        ff,
        source="pipe",
        source_format="mpegts",
        output=out,
        target="mp3",
        codec_copy=False,
        tags=TAGS,
    )
    assert "-nostdin" not in piped
    assert piped[piped.index("-i") + 1] == "pipe:0"
    assert "libmp3lame" in piped
    assert piped[piped.index("-q:a") + 1] == "4"
    assert "-id3v2_version" in piped


@pytest.mark.parametrize(
    ("target", "source_format", "source_codec"),
    [
        ("mp3", "mpegts", "aac"),
        ("mp3", "mpegts", None),  # unknown codec in TS: cannot promise MP3
        ("mp3", None, None),
        ("m4a", "mpegts", "mp3"),
        ("m4a-part", None, "opus"),
    ],
)
def test_copy_into_the_wrong_container_is_refused(
    ff: FfmpegInfo, tmp_path: Path, target: str, source_format: str | None, source_codec: str | None
) -> None:
    with pytest.raises(ValueError, match="stream copy"):
        convert_command(
            ff,
            source=tmp_path / "in",
            source_format=source_format,  # type: ignore[arg-type]
            output=tmp_path / "out",
            target=target,  # type: ignore[arg-type]
            codec_copy=True,
            tags=TAGS,
            source_codec=source_codec,
        )


def test_control_characters_never_reach_tags() -> None:
    tags = Tags(title="a\nb\x00c", album="  ", artist="x")
    assert dict(tags.metadata()) == {
        "title": "a b c",
        "artist": "x",
        "album_artist": "x",
        "genre": "Audiobook",
    }


# ---------------------------------------------------------------------------------------------
# Conversion with the real ffmpeg
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_key", "target", "codec_copy", "expect_codec"),
    [
        ("aac", "m4a", True, "aac"),
        ("aac", "m4a-part", True, "aac"),
        ("aac", "mp3", False, "mp3"),
        ("mp3", "mp3", True, "mp3"),
    ],
)
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_convert(
    ff: FfmpegInfo,
    media: dict[str, Path],
    tmp_path: Path,
    source_key: str,
    target: str,
    codec_copy: bool,
    expect_codec: str,
    via: str,
) -> None:
    source = media[source_key]
    found = probe(ff, source)
    out = tmp_path / f"01 - Part 1: odd -name.{target}.part"
    args = convert_command(
        ff,
        source=source if via == "file" else "pipe",
        source_format="mpegts",
        output=out,
        target=target,  # type: ignore[arg-type]
        codec_copy=codec_copy,
        tags=TAGS,
        source_codec=found.codec,
    )
    samples: list[ProgressSample] = []
    run_ffmpeg(
        args,
        stall_timeout=10,
        stdin_chunks=chunks_of(source) if via == "stdin" else None,
        partial_output=out,
        on_progress=samples.append,
        duration_hint=SECONDS,
    )

    info = probe(ff, out)
    assert info.codec == expect_codec
    assert info.duration == pytest.approx(SECONDS, abs=0.1)
    assert info.sample_rate == 44100
    assert info.channels == 1
    assert samples
    assert samples[-1].finished
    assert samples[-1].fraction == 1.0
    tags = read_tags(out)
    for key, value in TAGS.metadata():
        assert tags[key] == value, key
    assert tags["album_artist"] == "Some Author"
    if target.startswith("m4a"):
        # A stream copy must not touch a single audio sample.
        assert decoded_md5(out) == decoded_md5(source)
    else:
        data = out.read_bytes()
        assert data[:3] == b"ID3"
        assert data[3] == 3  # ID3v2.3
        assert b"Xing" in data[:4096] or b"Info" in data[:4096]  # players need it for VBR


def test_probe_of_leading_bytes(ff: FfmpegInfo, media: dict[str, Path]) -> None:
    info = probe(ff, media["mp3"].read_bytes()[:16_384])
    assert info.codec == "mp3"
    assert info.sample_rate == 44100


def test_probe_of_garbage_is_invalid_media(ff: FfmpegInfo, media: dict[str, Path]) -> None:
    with pytest.raises(FfmpegError) as caught:
        probe(ff, media["garbage"])
    assert caught.value.kind is FailureKind.INVALID_MEDIA
    assert "Invalid data found" in str(caught.value)


def test_decode_check(ff: FfmpegInfo, media: dict[str, Path]) -> None:
    clean = decode_check(ff, media["aac"], timeout=30)
    assert clean.problem is None
    assert clean.seconds == pytest.approx(SECONDS, abs=0.1)
    problem, seconds = decode_check(ff, media["damaged"], timeout=30)
    assert problem is not None
    assert "0x" not in problem  # ffmpeg's "[aac @ 0x55…]" prefix is stripped
    assert seconds is None


def _with_a_hole(source: Path, dest: Path) -> Path:
    """``source`` (MPEG-TS) without its middle third, cut at packet bounds: a lost segment."""
    data = source.read_bytes()
    third = len(data) // 3 // 188 * 188
    dest.write_bytes(data[:third] + data[2 * third :])
    return dest


@pytest.mark.parametrize(("target", "copy", "ext"), [("m4a", True, "m4a"), ("mp3", False, "mp3")])
def test_audio_seconds_counts_the_audio_not_the_timestamps(
    ff: FfmpegInfo, media: dict[str, Path], tmp_path: Path, target: Target, copy: bool, ext: str
) -> None:
    """Why the length check cannot use ffmpeg's out_time: a hole keeps the timeline's end."""
    holed = _with_a_hole(media["aac"], tmp_path / "holed.ts")
    out = tmp_path / f"out.{ext}"
    args = convert_command(
        ff,
        source=holed,
        source_format="mpegts",
        output=out,
        target=target,
        codec_copy=copy,
        tags=TAGS,
        source_codec="aac",
    )
    samples: list[ProgressSample] = []
    run_ffmpeg(args, stall_timeout=10, on_progress=samples.append)
    assert samples[-1].seconds_done == pytest.approx(SECONDS, abs=0.1)  # the timeline's end
    held = audio_seconds(ff, out)
    assert held is not None
    assert held == pytest.approx(SECONDS * 2 / 3, abs=0.25)  # what is really there


def test_decode_check_counts_an_mp3_cut_short_after_its_header(
    ff: FfmpegInfo, media: dict[str, Path], tmp_path: Path
) -> None:
    """The Xing header of an MP3 cut short later still claims the full length; a decode does not."""
    full = tmp_path / "full.mp3"
    args = convert_command(
        ff,
        source=media["aac"],
        source_format="mpegts",
        output=full,
        target="mp3",
        codec_copy=False,
        tags=TAGS,
        source_codec="aac",
    )
    run_ffmpeg(args, stall_timeout=10)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert audio_seconds(ff, cut) == pytest.approx(SECONDS, abs=0.1)  # the header's frame count
    decoded = decode_check(ff, cut)
    assert decoded.seconds is not None
    assert decoded.seconds < SECONDS * 0.75


def test_corrupt_input_is_invalid_media(
    ff: FfmpegInfo, media: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.m4a.part"
    args = convert_command(
        ff,
        source=media["garbage"],
        source_format="mpegts",
        output=out,
        target="m4a",
        codec_copy=True,
        tags=TAGS,
    )
    with pytest.raises(FfmpegError) as caught:
        run_ffmpeg(args, stall_timeout=10, partial_output=out)
    assert caught.value.kind is FailureKind.INVALID_MEDIA
    message = str(caught.value)
    assert message.startswith("ffmpeg failed (exit status ")
    assert "0x" not in message
    assert "\n" not in message
    assert not out.exists()


@NEEDS_POSIX_KERNEL
def test_full_disk_is_a_disk_error(ff: FfmpegInfo, media: dict[str, Path]) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    args = convert_command(
        ff,
        source=media["aac"],
        source_format="mpegts",
        output=Path("/dev/full"),
        target="mp3",
        codec_copy=False,
        tags=TAGS,
    )
    with pytest.raises(DiskError, match="No space left on device") as caught:
        run_ffmpeg(args, stall_timeout=10)  # no partial_output: never unlink /dev/full
    assert caught.value.kind is FailureKind.DISK


def _refusing_prefix(how: str, folder: Path) -> list[str]:
    """A command prefix under which the real file system refuses ffmpeg writes into ``folder``.

    Tests run as root, whom permission bits do not stop: ``read-only`` mounts a read-only tmpfs
    on ``folder`` in a private mount namespace (EROFS), ``no-permission`` runs ffmpeg as nobody
    (EACCES).
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to mount or to switch users")
    if how == "read-only":
        if subprocess.run(["unshare", "-m", "true"], check=False).returncode != 0:
            pytest.skip("cannot make a mount namespace here")
        script = 'mount -t tmpfs -o ro tokysnatcher-test "$1" && shift && exec "$@"'
        return ["unshare", "-m", "--", "sh", "-c", script, "sh", str(folder)]
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@NEEDS_POSIX_KERNEL
@pytest.mark.parametrize(
    ("how", "words"),
    [("read-only", "Read-only file system"), ("no-permission", "Permission denied")],
)
def test_an_output_the_file_system_refuses_is_a_disk_error(
    ff: FfmpegInfo, media: dict[str, Path], tmp_path: Path, how: str, words: str
) -> None:
    """Real ffmpeg, real EROFS / EACCES on opening its output: ``disk``, not ``invalid_media``."""
    folder = tmp_path / "out"
    folder.mkdir(mode=0o755)
    out = folder / "output.mp3"
    args = convert_command(
        ff,
        source="pipe",
        source_format="mpegts",
        output=out,
        target="mp3",
        codec_copy=False,
        tags=TAGS,
        source_codec="aac",
    )
    prefix = _refusing_prefix(how, folder)
    with pytest.raises(DiskError) as caught:
        run_ffmpeg(
            [*prefix, *args],
            stall_timeout=10,
            stdin_chunks=iter([media["aac"].read_bytes()]),
            partial_output=out,
        )
    message = caught.value.message
    assert caught.value.kind is FailureKind.DISK
    assert words in message, message
    assert str(out) in message, message
    assert "\n" not in message
    assert "0x" not in message
    assert not out.exists()


def test_disk_refusal_is_only_the_file_system_refusing() -> None:
    refused = disk_refusal(
        [
            "[out#0/mp3 @ 0x55d0] Error opening output file file:/b/output.mp3: Permission denied",
            "Error opening output files: Permission denied",
        ]
    )
    assert refused == "Error opening output file file:/b/output.mp3: Permission denied"
    assert disk_refusal(["[mp3 @ 0x1] Error writing trailer: No space left on device"]) == (
        "Error writing trailer: No space left on device"
    )
    damaged = "[aac @ 0x5] Input buffer exhausted before END element found"
    assert disk_refusal([damaged, "Invalid data found when processing input"]) is None
    assert (
        disk_refusal(["[concat @ 0x2] Unsafe file name 'a:b'", "Operation not permitted"]) is None
    )


def test_failing_stdin_source_aborts_without_a_truncated_file(
    ff: FfmpegInfo, media: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.m4a.part"
    args = convert_command(
        ff,
        source="pipe",
        source_format="mpegts",
        output=out,
        target="m4a",
        codec_copy=True,
        tags=TAGS,
    )

    def failing() -> Iterator[bytes]:
        yield media["aac"].read_bytes()[:12_032]
        raise OSError("segment 3 vanished")

    with pytest.raises(OSError, match="segment 3 vanished"):
        run_ffmpeg(args, stall_timeout=10, stdin_chunks=failing(), partial_output=out)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Watchdog, cancellation, cleanup
# ---------------------------------------------------------------------------------------------


def fake_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, **kwargs: object
) -> tuple[float, FfmpegError, Path, int]:
    """Run the fake in ``mode`` under run_ffmpeg; return elapsed, error, output, pid."""
    monkeypatch.setenv("FAKE_FFMPEG_MODE", mode)
    pidfile = tmp_path / "pid"
    monkeypatch.setenv("FAKE_FFMPEG_PIDFILE", str(pidfile))
    out = tmp_path / "out.mp3.part"
    args = [sys.executable, str(FAKE), "-progress", "pipe:1", f"file:{out}"]
    started = time.monotonic()
    with pytest.raises(FfmpegError) as caught:
        run_ffmpeg(args, partial_output=out, **kwargs)  # type: ignore[arg-type]
    return time.monotonic() - started, caught.value, out, int(pidfile.read_text())


@pytest.mark.parametrize("mode", ["hang", "progress-frozen"])
def test_stalled_ffmpeg_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    elapsed, error, out, pid = fake_run(
        tmp_path, monkeypatch, mode, stall_timeout=1.0, kill_grace=0.5
    )
    assert error.kind is FailureKind.FFMPEG_STALLED
    assert "no progress for 1 s" in str(error)
    assert 1.0 <= elapsed < 1.0 + 0.5 + 1.0
    assert not out.exists()
    assert_gone(pid)


def test_a_short_run_past_its_timeout_is_a_stall_and_leaves_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FfmpegInfo(path=str(fake_binary(tmp_path)), version="0.0-fake", source="option")
    pidfile = tmp_path / "pid"
    monkeypatch.setenv("FAKE_FFMPEG_MODE", "hang")
    monkeypatch.setenv("FAKE_FFMPEG_PIDFILE", str(pidfile))
    source = tmp_path / "cover.webp"
    source.write_bytes(b"RIFF")
    out = tmp_path / "cover.jpg"
    started = time.monotonic()
    with pytest.raises(FfmpegError) as caught:
        image_to_jpeg(fake, source, out, max_pixels=1 << 20, timeout=0.5)
    assert time.monotonic() - started < 0.5 + 2.0
    assert caught.value.kind is FailureKind.FFMPEG_STALLED
    assert caught.value.message == "converting the image cover.webp did not finish within 0.5 s"
    assert not out.exists()
    assert_gone(int(pidfile.read_text()))


@NEEDS_SIGNALS
def test_ffmpeg_ignoring_sigterm_is_killed_after_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elapsed, error, out, pid = fake_run(
        tmp_path, monkeypatch, "hang-ignore-term", stall_timeout=1.0, kill_grace=0.5
    )
    assert error.kind is FailureKind.FFMPEG_STALLED
    assert 1.5 <= elapsed < 1.0 + 0.5 + 1.0
    assert not out.exists()
    assert_gone(pid)


def test_stop_event_cancels_promptly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    elapsed, error, out, pid = fake_run(
        tmp_path, monkeypatch, "progress-forever", stall_timeout=10, kill_grace=0.5, stop=stop
    )
    assert error.kind is FailureKind.CANCELLED
    assert elapsed < 0.3 + 1.0
    assert not out.exists()
    assert_gone(pid)


def test_stop_event_cancels_real_ffmpeg_waiting_on_a_slow_feed(
    ff: FfmpegInfo, media: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.mp3.part"
    args = convert_command(
        ff,
        source="pipe",
        source_format="mpegts",
        output=out,
        target="mp3",
        codec_copy=False,
        tags=TAGS,
    )
    release = threading.Event()

    def slow() -> Iterator[bytes]:
        yield from chunks_of(media["aac"])
        release.wait(30)  # a download that stopped delivering: the feeder is stuck here

    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(FfmpegError) as caught:
            run_ffmpeg(
                args,
                stall_timeout=10,
                kill_grace=0.5,
                stop=stop,
                stdin_chunks=slow(),
                partial_output=out,
            )
    finally:
        release.set()
    assert caught.value.kind is FailureKind.CANCELLED
    assert time.monotonic() - started < 0.5 + 1.0
    assert not out.exists()
    assert processes.registry().live() == []


def test_missing_binary_at_run_time(tmp_path: Path) -> None:
    with pytest.raises(FfmpegNotFoundError, match="cannot run"):
        run_ffmpeg([str(tmp_path / "gone"), "-version"], stall_timeout=1)


@NEEDS_POSIX_KERNEL
def test_children_run_in_their_own_session(tmp_path: Path) -> None:
    """Ctrl-C in the terminal must reach only us; we end ffmpeg ourselves."""
    proc = processes.spawn([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.getsid(proc.pid) == proc.pid
        assert os.getsid(proc.pid) != os.getsid(0)
    finally:
        processes.stop_process(proc, grace=1)
        processes.unregister(proc)
    assert proc.returncode is not None


@NEEDS_SIGNALS
def test_terminate_all_reaps_everything_and_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FFMPEG_MODE", "hang-ignore-term")
    ready = tmp_path / "ready"
    monkeypatch.setenv("FAKE_FFMPEG_READY", str(ready))
    registry = processes.ProcessRegistry()
    stubborn = registry.spawn([sys.executable, str(FAKE)])
    polite = registry.spawn([sys.executable, "-c", "import time; time.sleep(30)"])
    deadline = time.monotonic() + 20
    while not ready.exists():  # the stubborn one has installed its SIGTERM handler
        assert time.monotonic() < deadline, "fake ffmpeg never started"
        time.sleep(0.02)

    started = time.monotonic()
    assert registry.terminate_all(grace=0.5) == 2
    assert time.monotonic() - started < 2
    assert stubborn.returncode == -9
    assert polite.returncode == -15
    assert not psutil.pid_exists(stubborn.pid)
    assert registry.live() == []
    assert registry.terminate_all(grace=0.5) == 0  # idempotent
    with pytest.raises(processes.RegistryClosedError):
        registry.spawn([sys.executable, "-c", "pass"])
    registry.reopen()  # the run that closed it is over: an in-process caller goes on
    again = registry.spawn([sys.executable, "-c", "pass"])
    assert again.wait(timeout=10) == 0
    registry.unregister(again)
