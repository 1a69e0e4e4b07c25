"""Everything that runs ffmpeg: finding the binary, building commands, probing, running them.

* :func:`resolve_ffmpeg` picks the binary (``--ffmpeg``, ``TOKYSNATCHER_FFMPEG``, ``PATH``, the
  one bundled by imageio-ffmpeg) and checks it once with ``-version`` under a timeout.
* :func:`convert_command` builds a conversion command line with ffmpeg-python plus our fixed
  options: local input only (``-protocol_whitelist file,pipe``), machine-readable progress,
  errors only on stderr, audio only, our tags and nothing else.
* :func:`run_ffmpeg` runs a command under the stall watchdog (SPEC §5): no advance in the
  ``-progress`` stream for ``stall_timeout`` seconds, or a stop request, ends the process
  (terminate, then kill), reaps it and removes its partial output.
* :func:`probe`, :func:`decode_check` and :func:`decoded_md5` are short bounded runs.

There is no ffprobe: :func:`probe` reads the stream summary that ``ffmpeg -i FILE`` prints.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import ffmpeg as ffmpeg_python

from tokysnatcher.core import processes
from tokysnatcher.core.progress import FfmpegProgressTracker, ProgressSample
from tokysnatcher.errors import DiskError, FailureKind, FfmpegError, FfmpegNotFoundError

ENV_VAR = "TOKYSNATCHER_FFMPEG"
PROTOCOL_WHITELIST = "file,pipe"
MP3_VBR_QUALITY = "4"  # libmp3lame VBR V4: ample for speech, far below the old 320k (SPEC §2)
AAC_ENCODE_BITRATE = "96k"  # only when an m4a is asked for without stream copy

FfmpegSource = Literal["option", "env", "path", "bundled"]
SourceFormat = Literal["mpegts", "mp3"]
Target = Literal["mp3", "m4a", "m4a-part"]

_POLL = 0.1  # how often the watchdog looks at the stop event and the clock
_EOF_GRACE = 2.0  # after exit, how long to wait for the rest of the progress stream
_JOIN = 2.0  # bound on joining pipe threads once the process is gone
_VERSION = re.compile(rb"ffmpeg version (\S+)")
_DURATION = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: ([\w-]+)(.*)")
_SAMPLE_RATE = re.compile(r", (\d+) Hz")
_CHANNELS = re.compile(r"Hz, (mono|stereo|quad|(\d+)\.(\d+)(?:\(\w+\))?|(\d+) channels)")
_LOG_PREFIX = re.compile(r"^(\[[^\]]* @ 0x[0-9a-f]+\] ?)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_DISK_FULL = ("No space left on device", "Disk quota exceeded")


@dataclass(frozen=True)
class FfmpegInfo:
    """A checked ffmpeg binary: where it is, its version and how it was chosen."""

    path: str
    version: str
    source: FfmpegSource


@dataclass(frozen=True, kw_only=True)
class Tags:
    """The tags written to every output (SPEC §3). ``track`` is ``"n/total"``."""

    title: str
    album: str
    artist: str
    album_artist: str | None = None  # defaults to ``artist``
    composer: str | None = None  # the narrator, when the site names one
    track: str | None = None
    genre: str = "Audiobook"
    date: str | None = None
    comment: str | None = None

    def metadata(self) -> list[tuple[str, str]]:
        """ffmpeg metadata keys and values; control characters become spaces, blanks drop."""
        pairs = [
            ("title", self.title),
            ("album", self.album),
            ("artist", self.artist),
            ("album_artist", self.album_artist or self.artist),
            ("composer", self.composer),
            ("track", self.track),
            ("genre", self.genre),
            ("date", self.date),
            ("comment", self.comment),
        ]
        cleaned = [(key, _CONTROL.sub(" ", value).strip()) for key, value in pairs if value]
        return [(key, value) for key, value in cleaned if value]


def track_tag(number: int, total: int) -> str:
    """The ``track`` tag for chapter ``number`` of ``total``: ``"3/12"``."""
    return f"{number}/{total}"


class MediaInfo(NamedTuple):
    """What :func:`probe` learnt about the first audio stream of a file."""

    codec: str | None
    duration: float | None
    sample_rate: int | None
    channels: int | None


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------

_cache: dict[tuple[str | None, str | None, str | None], FfmpegInfo] = {}
_cache_lock = threading.Lock()


def resolve_ffmpeg(
    explicit: str | None, *, env: Mapping[str, str] | None = None, timeout: float = 10.0
) -> FfmpegInfo:
    """Find and check the ffmpeg to use; the result is cached for the process.

    Order: ``explicit`` (``--ffmpeg``), ``$TOKYSNATCHER_FFMPEG``, ``ffmpeg`` on ``PATH``, the
    imageio-ffmpeg binary. The chosen binary is checked once; a bad explicit or environment
    choice raises :class:`FfmpegNotFoundError` instead of silently falling back, and so does a
    broken ``ffmpeg`` on ``PATH`` (the user can point ``--ffmpeg`` elsewhere).
    """
    env = os.environ if env is None else env
    explicit = explicit or None
    env_value = env.get(ENV_VAR) or None
    search_path = env.get("PATH", os.defpath)
    key = (explicit, env_value, None if explicit or env_value else search_path)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    info = _resolve(explicit, env_value, search_path, timeout)
    with _cache_lock:
        _cache[key] = info
    return info


def clear_resolution_cache() -> None:
    """Forget resolved binaries (tests, or after the user changed the environment)."""
    with _cache_lock:
        _cache.clear()


def _resolve(
    explicit: str | None, env_value: str | None, search_path: str, timeout: float
) -> FfmpegInfo:
    if explicit is not None:
        label = f"--ffmpeg {explicit}"
        return _check(_locate(explicit, label, search_path), "option", label, timeout)
    if env_value is not None:
        label = f"{ENV_VAR}={env_value}"
        return _check(_locate(env_value, label, search_path), "env", label, timeout)
    found = shutil.which("ffmpeg", path=search_path)
    if found is not None:
        return _check(found, "path", f"ffmpeg on PATH ({found})", timeout)
    try:
        import imageio_ffmpeg  # imported late: only needed when nothing else was found

        bundled = str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as err:  # the package raises RuntimeError, a broken install anything
        raise FfmpegNotFoundError(
            f"no ffmpeg found: none on PATH and the bundled imageio-ffmpeg binary is "
            f"unavailable ({err})"
        ) from err
    return _check(bundled, "bundled", f"bundled ffmpeg ({bundled})", timeout)


def _locate(value: str, label: str, search_path: str) -> str:
    """Turn a user-given name or path into an existing executable file, or raise."""
    if os.sep not in value and (os.altsep is None or os.altsep not in value):
        found = shutil.which(value, path=search_path)
        if found is None:
            raise FfmpegNotFoundError(f"{label}: not found")
        return found
    path = Path(value).expanduser()
    if not path.exists():
        raise FfmpegNotFoundError(f"{label}: not found")
    if path.is_dir():
        raise FfmpegNotFoundError(f"{label}: is a directory, not an ffmpeg binary")
    if not os.access(path, os.X_OK):
        raise FfmpegNotFoundError(f"{label}: not executable")
    return str(path)


def _check(path: str, source: FfmpegSource, label: str, timeout: float) -> FfmpegInfo:
    try:
        returncode, out, _ = _run_short([path, "-version"], timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise FfmpegNotFoundError(
            f"{label}: not an ffmpeg binary (-version did not finish within {timeout:g} s)"
        ) from err
    except OSError as err:
        raise FfmpegNotFoundError(
            f"{label}: not an ffmpeg binary (cannot run it: {err.strerror or err})"
        ) from err
    match = _VERSION.match(out.lstrip())
    if returncode != 0 or match is None:
        raise FfmpegNotFoundError(f"{label}: not an ffmpeg binary (-version failed)")
    return FfmpegInfo(path=path, version=match.group(1).decode(errors="replace"), source=source)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def convert_command(
    ffmpeg: FfmpegInfo,
    *,
    source: Path | Literal["pipe"],
    source_format: SourceFormat | None,
    output: Path,
    target: Target,
    codec_copy: bool,
    tags: Tags,
    source_codec: str | None = None,
) -> list[str]:
    """The command that turns one chapter's audio into ``output`` (a temporary path).

    ``source="pipe"`` reads stdin (feed it with ``run_ffmpeg(stdin_chunks=...)``).
    ``source_codec`` is the probed audio codec. Targets: ``mp3`` (copy needs an MP3 source,
    else libmp3lame VBR ``-q:a 4``), ``m4a`` (AAC copy, faststart) and ``m4a-part`` (an m4a
    without the faststart rewrite: an intermediate for the m4b merge). The muxer is always
    named, so the temporary name's extension does not matter.

    Raises ValueError for a stream copy that would put the wrong codec in the container: a
    ``.mp3`` must never hold anything but MP3.
    """
    if target not in ("mp3", "m4a", "m4a-part"):
        raise ValueError(f"unknown target {target!r}")
    from_pipe = not isinstance(source, Path)
    is_ts = source_format == "mpegts" or (
        isinstance(source, Path) and source.suffix.lower() == ".ts"
    )
    out_kwargs: dict[str, object] = {
        "vn": None,
        "sn": None,
        "dn": None,
        "map_metadata": "-1",
        "map_chapters": "-1",
    }
    if target == "mp3":
        if codec_copy and not (
            source_codec == "mp3" or (source_codec is None and source_format == "mp3")
        ):
            raise ValueError(
                f"stream copy to mp3 needs an MP3 source, not {source_codec or 'an unknown codec'}"
            )
        out_kwargs["format"] = "mp3"
        out_kwargs["id3v2_version"] = "3"  # ID3v2.3: what most players and car stereos read
        if codec_copy:
            out_kwargs["c:a"] = "copy"
        else:
            out_kwargs.update({"c:a": "libmp3lame", "q:a": MP3_VBR_QUALITY})
    else:
        if codec_copy and source_codec not in (None, "aac"):
            raise ValueError(f"stream copy to {target} needs an AAC source, not {source_codec}")
        out_kwargs["format"] = "ipod"  # the MP4 flavour with the M4A brand
        if codec_copy:
            out_kwargs["c:a"] = "copy"
            if is_ts:
                out_kwargs["bsf:a"] = "aac_adtstoasc"  # ADTS headers (TS) -> MP4 config
        else:
            out_kwargs.update({"c:a": "aac", "b:a": AAC_ENCODE_BITRATE})
        if target == "m4a":
            out_kwargs["movflags"] = "+faststart"

    in_kwargs: dict[str, object] = {"protocol_whitelist": PROTOCOL_WHITELIST}
    if source_format is not None:
        in_kwargs["format"] = source_format
    in_url = _file_url(source) if isinstance(source, Path) else "pipe:0"
    stream = ffmpeg_python.input(in_url, **in_kwargs)
    node = ffmpeg_python.output(stream["a:0"], _file_url(output), **out_kwargs)
    args: list[str] = node.compile(cmd=[ffmpeg.path, *_global_options(stdin=from_pipe)])
    metadata = [arg for key, value in tags.metadata() for arg in ("-metadata", f"{key}={value}")]
    args[-1:-1] = metadata  # the output path stays last
    return args


def _global_options(*, stdin: bool) -> list[str]:
    options = ["-hide_banner"]
    if not stdin:
        options.append("-nostdin")  # never let ffmpeg read (or wait on) our terminal
    return [*options, "-loglevel", "error", "-nostats", "-progress", "pipe:1", "-y"]


def _file_url(path: Path | str) -> str:
    # The explicit file: protocol keeps a name like "Part 1: Intro.mp3" from being read as a
    # protocol prefix, and absolute paths keep the working directory out of it.
    return f"file:{Path(path).absolute()}"


# ---------------------------------------------------------------------------------------------
# Short bounded runs
# ---------------------------------------------------------------------------------------------


def probe(ffmpeg: FfmpegInfo, source: Path | bytes, *, timeout: float = 30.0) -> MediaInfo:
    """Codec, duration, sample rate and channels of the first audio stream.

    ``source`` is a file or the leading bytes of one (for example a first segment). Raises
    ``FfmpegError(INVALID_MEDIA)`` when ffmpeg cannot open it and ``FfmpegError(FFMPEG_STALLED)``
    when it does not answer within ``timeout``.
    """
    args = [ffmpeg.path, "-hide_banner"]
    if isinstance(source, bytes):
        data: bytes | None = source
        url, name = "pipe:0", "the given data"
    else:
        data, url, name = None, _file_url(source), str(source)
        args.append("-nostdin")
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", url]
    try:
        # ffmpeg exits 1 here ("At least one output file must be specified"): that is expected.
        _, _, err = _run_short(args, timeout=timeout, stdin_data=data)
    except subprocess.TimeoutExpired as exc:
        raise FfmpegError(
            f"ffmpeg did not finish reading {name} within {timeout:g} s",
            kind=FailureKind.FFMPEG_STALLED,
        ) from exc
    text = err.decode("utf-8", errors="replace")
    if "Input #0" not in text:
        detail = _summarize([line for line in text.splitlines() if line.strip()])
        raise FfmpegError(f"ffmpeg cannot read {name}: {detail}", kind=FailureKind.INVALID_MEDIA)
    duration = _DURATION.search(text)
    audio = _AUDIO.search(text)
    rate = _SAMPLE_RATE.search(audio.group(2)) if audio else None
    return MediaInfo(
        codec=audio.group(1) if audio else None,
        duration=(
            int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3))
            if duration
            else None
        ),
        sample_rate=int(rate.group(1)) if rate else None,
        channels=_channels(audio.group(2)) if audio else None,
    )


def _channels(description: str) -> int | None:
    match = _CHANNELS.search(description)
    if match is None:
        return None
    layout, main, lfe, count = match.groups()
    if layout in ("mono", "stereo", "quad"):
        return {"mono": 1, "stereo": 2, "quad": 4}[layout]
    if count is not None:
        return int(count)
    return int(main) + int(lfe)


def decode_check(ffmpeg: FfmpegInfo, path: Path, *, timeout: float = 600.0) -> str | None:
    """Decode every audio frame of ``path``; the first error line, or None when it is clean."""
    returncode, _, err = _decode(ffmpeg, path, "null", timeout)
    lines = [line for line in err.decode("utf-8", errors="replace").splitlines() if line.strip()]
    if lines:
        return _LOG_PREFIX.sub("", lines[0]).strip()
    return None if returncode == 0 else f"ffmpeg exited with status {returncode}"


def decoded_md5(ffmpeg: FfmpegInfo, path: Path, *, timeout: float = 600.0) -> str:
    """MD5 of the decoded audio samples: equal for the same audio in any container."""
    returncode, out, err = _decode(ffmpeg, path, "md5", timeout)
    match = re.search(rb"MD5=([0-9a-f]{32})", out)
    if returncode != 0 or match is None:
        lines = err.decode("utf-8", errors="replace").splitlines()
        raise FfmpegError(
            f"cannot decode {path.name}: {_summarize(lines)}", kind=FailureKind.INVALID_MEDIA
        )
    return match.group(1).decode()


def _decode(ffmpeg: FfmpegInfo, path: Path, muxer: str, timeout: float) -> tuple[int, bytes, bytes]:
    args = [ffmpeg.path, "-hide_banner", "-nostdin", "-v", "error"]
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", _file_url(path)]
    args += ["-map", "0:a", "-f", muxer, "-"]
    try:
        return _run_short(args, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FfmpegError(
            f"decoding {path.name} did not finish within {timeout:g} s",
            kind=FailureKind.FFMPEG_STALLED,
        ) from exc


def _run_short(
    args: list[str], *, timeout: float, stdin_data: bytes | None = None
) -> tuple[int, bytes, bytes]:
    try:
        return processes.run_bounded(args, timeout=timeout, stdin_data=stdin_data)
    except processes.RegistryClosedError as err:
        raise FfmpegError(str(err), kind=FailureKind.CANCELLED) from err


# ---------------------------------------------------------------------------------------------
# Long runs under the watchdog
# ---------------------------------------------------------------------------------------------


def run_ffmpeg(
    args: list[str],
    *,
    stall_timeout: float,
    kill_grace: float = 5.0,
    stop: threading.Event | None = None,
    stdin_chunks: Iterable[bytes] | None = None,
    partial_output: Path | None = None,
    on_progress: Callable[[ProgressSample], None] | None = None,
    duration_hint: float | None = None,
) -> None:
    """Run ``args`` (which must include ``-progress pipe:1``) to completion under the watchdog.

    ``stdin_chunks`` feeds an input of ``pipe:0``; an exception raised by that iterator ends
    ffmpeg and is re-raised here. ``on_progress`` is called from this thread for every
    progress block. On any failure ``partial_output`` is removed and the process is reaped.

    Raises ``FfmpegError`` with kind ``FFMPEG_STALLED`` (no advance for ``stall_timeout`` s),
    ``CANCELLED`` (``stop`` was set) or ``INVALID_MEDIA`` (non-zero exit), and ``DiskError``
    when ffmpeg ran out of space.
    """
    tracker = FfmpegProgressTracker(stall_timeout=stall_timeout)
    try:
        proc = processes.spawn(
            args, stdin=subprocess.PIPE if stdin_chunks is not None else subprocess.DEVNULL
        )
    except processes.RegistryClosedError as err:
        _remove(partial_output)
        raise FfmpegError("ffmpeg not started: shutting down", kind=FailureKind.CANCELLED) from err
    except OSError as err:
        _remove(partial_output)
        raise FfmpegNotFoundError(f"cannot run {args[0]}: {err.strerror or err}") from err

    assert proc.stdout is not None
    assert proc.stderr is not None
    abort = threading.Event()
    pump = processes.LinePump(proc.stdout, name="ffmpeg-progress")
    tail = processes.StderrTail(proc.stderr, name="ffmpeg-stderr")
    feeder = None
    if stdin_chunks is not None:
        assert proc.stdin is not None
        feeder = processes.StdinFeeder(proc.stdin, stdin_chunks, abort)
    for thread in (pump, tail, feeder):
        if thread is not None:
            thread.start()

    try:
        verdict = _watch(proc, pump, tracker, feeder, stop, on_progress, duration_hint)
    except BaseException:  # a failing on_progress callback, KeyboardInterrupt, ...
        processes.stop_process(proc, kill_grace)
        _remove(partial_output)
        raise
    finally:
        abort.set()
        processes.stop_process(proc, kill_grace)  # a no-op once ffmpeg has exited
        processes.unregister(proc)
        if proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
        pump.join(timeout=_JOIN)  # both end at EOF, right after the process is gone
        tail.join(timeout=_JOIN)
        if feeder is not None:
            # A feeder blocked inside the caller's iterator cannot be interrupted from here;
            # it sees the abort flag when the iterator yields again and writes nothing more.
            feeder.join(timeout=_POLL)

    try:
        _raise_for(verdict, proc.returncode, tracker, tail, feeder, stall_timeout)
    except BaseException:
        _remove(partial_output)
        raise


_Verdict = Literal["exited", "stalled", "cancelled", "feeder-failed"]


def _watch(
    proc: subprocess.Popen[bytes],
    pump: processes.LinePump,
    tracker: FfmpegProgressTracker,
    feeder: processes.StdinFeeder | None,
    stop: threading.Event | None,
    on_progress: Callable[[ProgressSample], None] | None,
    duration_hint: float | None,
) -> _Verdict:
    """Follow the progress stream until ffmpeg exits or must be stopped."""
    eof = False
    exited_at: float | None = None
    while True:
        if eof:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_POLL)
        else:
            try:
                line = pump.lines.get(timeout=_POLL)
            except queue.Empty:
                pass
            else:
                if line is None:
                    eof = True
                else:
                    sample = tracker.feed(line, duration_hint)
                    if sample is not None and on_progress is not None:
                        on_progress(sample)
        if proc.poll() is not None:
            exited_at = time.monotonic() if exited_at is None else exited_at
            if eof or time.monotonic() - exited_at > _EOF_GRACE:
                return "exited"
            continue
        if stop is not None and stop.is_set():
            return "cancelled"
        if feeder is not None and feeder.error is not None:
            return "feeder-failed"
        if tracker.stalled():
            return "stalled"


def _raise_for(
    verdict: _Verdict,
    returncode: int | None,
    tracker: FfmpegProgressTracker,
    tail: processes.StderrTail,
    feeder: processes.StdinFeeder | None,
    stall_timeout: float,
) -> None:
    if feeder is not None and feeder.error is not None:
        raise feeder.error
    if verdict == "cancelled":
        raise FfmpegError("conversion cancelled", kind=FailureKind.CANCELLED)
    if verdict == "stalled":
        raise FfmpegError(
            f"ffmpeg made no progress for {stall_timeout:g} s "
            f"(stopped at {tracker.seconds_done:.1f} s of audio)",
            kind=FailureKind.FFMPEG_STALLED,
        )
    if returncode == 0:
        return
    lines = [tail.first] if tail.first is not None else []
    lines += [line for line in tail.tail if line != tail.first]
    disk_full = [line for line in lines if any(marker in line for marker in _DISK_FULL)]
    if disk_full:
        raise DiskError(f"ffmpeg could not write its output: {_summarize(disk_full[-1:])}")
    if processes.registry().closed:
        raise FfmpegError("ffmpeg ended: shutting down", kind=FailureKind.CANCELLED)
    status = f"signal {-returncode}" if returncode is not None and returncode < 0 else returncode
    raise FfmpegError(
        f"ffmpeg failed (exit status {status}): {_summarize(lines)}",
        kind=FailureKind.INVALID_MEDIA,
    )


def _summarize(lines: list[str]) -> str:
    """The first and last meaningful stderr lines, without ffmpeg's ``[ctx @ 0x…]`` prefixes."""
    cleaned = [_LOG_PREFIX.sub("", line).strip() for line in lines]
    cleaned = [line for line in cleaned if line and not line.startswith("Press [q]")]
    if not cleaned:
        return "no error message"
    if len(cleaned) == 1 or cleaned[0] == cleaned[-1]:
        return cleaned[-1]
    return f"{cleaned[0]} / {cleaned[-1]}"


def _remove(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# m4b: the join command, ffmetadata files, cover images
# ---------------------------------------------------------------------------------------------

M4B_BRAND = "M4B "  # the major brand players use to treat an MP4 audio file as an audiobook
ImageFormat = Literal["jpeg", "png"]
_IMAGE_DEMUXER: dict[ImageFormat, str] = {"jpeg": "jpeg_pipe", "png": "png_pipe"}
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: ([\w-]+).*?, (\d{1,6})x(\d{1,6})")
_FFMETA_SPECIAL = re.compile(r"([=;#\\\n])")


class Chapter(NamedTuple):
    """One chapter marker: start and end in seconds, and its title."""

    start: float
    end: float
    title: str


class FileMetadata(NamedTuple):
    """Global tags and chapter markers of a file, as :func:`read_metadata` found them."""

    tags: dict[str, str]
    chapters: list[Chapter]


class ImageInfo(NamedTuple):
    """What :func:`probe_image` learnt about an image file."""

    codec: str
    width: int
    height: int


def m4b_join_command(
    ffmpeg: FfmpegInfo,
    *,
    concat_list: Path,
    metadata: Path,
    output: Path,
    frame_samples: int,
    cover: Path | None = None,
    cover_format: ImageFormat = "jpeg",
) -> list[str]:
    """The command that joins m4a parts into one m4b without re-encoding.

    ``concat_list`` is an ffconcat file naming the parts (see :func:`concat_list_text`),
    ``metadata`` an ffmetadata file with the tags and chapters (:func:`ffmetadata_text`).
    Every packet is re-stamped at ``N * frame_samples`` (in the parts' time base) so that the
    timeline is exactly what the decoder plays: stream copies from MPEG-TS carry timestamps
    rounded to 90 kHz, and parts may end on a short frame. ``cover`` (JPEG or PNG) becomes the
    attached picture, copied as it is.
    """
    whitelist = ["-protocol_whitelist", PROTOCOL_WHITELIST]
    args = [ffmpeg.path, *_global_options(stdin=False)]
    args += ["-f", "concat", "-safe", "0", *whitelist, "-i", _file_url(concat_list)]
    args += ["-f", "ffmetadata", *whitelist, "-i", _file_url(metadata)]
    if cover is not None:
        args += ["-f", _IMAGE_DEMUXER[cover_format], *whitelist, "-i", _file_url(cover)]
    args += ["-map", "0:a:0"]
    if cover is not None:
        args += ["-map", "2:v:0", "-c:v", "copy", "-disposition:v:0", "attached_pic"]
    stamp = f"N*{frame_samples}"
    args += ["-map_metadata", "1", "-map_chapters", "1", "-c:a", "copy"]
    args += ["-bsf:a", f"setts=pts={stamp}:dts={stamp}:duration={frame_samples}"]
    args += ["-movflags", "+faststart", "-brand", M4B_BRAND, "-f", "ipod", _file_url(output)]
    return args


def concat_list_text(parts: Iterable[Path]) -> str:
    """An ffconcat list of ``parts`` (absolute ``file:`` URLs, quoted for the list syntax).

    No per-file options (ffmpeg 4.4, still common, has none): the join re-stamps every packet
    anyway, so the parts' own timestamps and edit lists do not shape the timeline.
    """
    lines = ["ffconcat version 1.0"]
    for part in parts:
        url = _file_url(part)
        if any(ch in url for ch in "\r\n\x00"):
            raise ValueError(f"{part} has a line break in its path; ffmpeg cannot list it")
        quoted = url.replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    return "\n".join(lines) + "\n"


def _ffmeta_escape(value: str) -> str:
    return _FFMETA_SPECIAL.sub(r"\\\1", _CONTROL.sub(" ", value).strip())


def ffmetadata_text(
    tags: Iterable[tuple[str, str]],
    chapters: Iterable[tuple[int, int, str]],
    *,
    timebase: int,
) -> str:
    """An ffmetadata file: global ``tags`` and chapters as ``(start, end, title)``.

    Chapter times are in units of ``1/timebase`` seconds (the audio's sample rate gives exact
    boundaries). Control characters become spaces; ``= ; # \\`` are escaped.
    """
    lines = [";FFMETADATA1"]
    lines += [f"{_ffmeta_escape(key)}={_ffmeta_escape(value)}" for key, value in tags]
    for start, end, title in chapters:
        lines += ["[CHAPTER]", f"TIMEBASE=1/{timebase}", f"START={start}", f"END={end}"]
        lines.append(f"title={_ffmeta_escape(title)}")
    return "\n".join(lines) + "\n"


def read_metadata(ffmpeg: FfmpegInfo, path: Path, *, timeout: float = 60.0) -> FileMetadata:
    """Global tags (keys lower-cased) and chapters of ``path``, as ffmpeg reads them back."""
    args = [ffmpeg.path, "-hide_banner", "-nostdin", "-v", "error"]
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", _file_url(path), "-f", "ffmetadata"]
    try:
        returncode, out, err = _run_short([*args, "-"], timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FfmpegError(
            f"reading the tags of {path.name} did not finish within {timeout:g} s",
            kind=FailureKind.FFMPEG_STALLED,
        ) from exc
    if returncode != 0:
        lines = err.decode("utf-8", errors="replace").splitlines()
        raise FfmpegError(
            f"cannot read {path.name}: {_summarize(lines)}", kind=FailureKind.INVALID_MEDIA
        )
    return _parse_ffmetadata(out.decode("utf-8", errors="replace"))


def _parse_ffmetadata(text: str) -> FileMetadata:
    tags: dict[str, str] = {}
    chapters: list[Chapter] = []
    section: dict[str, str] | None = None  # the open [CHAPTER], if any
    in_other_section = False

    def close() -> None:
        if section is not None:
            num, _, den = section.get("timebase", "1/1000").partition("/")
            scale = int(num) / int(den or 1)
            start, end = int(section.get("start", 0)) * scale, int(section.get("end", 0)) * scale
            chapters.append(Chapter(start, end, section.get("title", "")))

    for key, value in _ffmetadata_pairs(text):
        if key == "[CHAPTER]":
            close()
            section, in_other_section = {}, False
        elif key.startswith("["):
            close()
            section, in_other_section = None, True
        elif section is not None:
            section[key.lower()] = value
        elif not in_other_section:
            tags.setdefault(key.lower(), value)
    close()
    return FileMetadata(tags, chapters)


def _ffmetadata_pairs(text: str) -> Iterable[tuple[str, str]]:
    """``(key, value)`` per entry (escapes undone, continued lines joined); sections as keys."""
    logical: list[str] = []
    current = ""
    for line in text.split("\n"):
        current += line
        trailing = len(current) - len(current.rstrip("\\"))
        if trailing % 2 == 1:  # an escaped newline: the value goes on
            current = current[:-1] + "\n"
            continue
        logical.append(current)
        current = ""
    for line in logical:
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("[") and line.endswith("]"):
            yield line, ""
            continue
        key, value = _split_unescaped(line)
        yield key, value


def _split_unescaped(line: str) -> tuple[str, str]:
    parts: list[str] = [""]
    chars = iter(line)
    for ch in chars:
        if ch == "\\":
            parts[-1] += next(chars, "")
        elif ch == "=" and len(parts) == 1:
            parts.append("")
        else:
            parts[-1] += ch
    return parts[0], parts[1] if len(parts) > 1 else ""


def image_format(data: bytes) -> ImageFormat | None:
    """``jpeg`` or ``png`` from a file's first bytes (its magic number), else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


def probe_image(ffmpeg: FfmpegInfo, path: Path, *, timeout: float = 30.0) -> ImageInfo:
    """Decode the first picture of ``path``; its codec and size, or ``FfmpegError``."""
    args = [ffmpeg.path, "-hide_banner", "-nostdin", "-nostats", "-xerror"]
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", _file_url(path)]
    args += ["-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"]
    try:
        returncode, _, err = _run_short(args, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FfmpegError(
            f"decoding the image {path.name} did not finish within {timeout:g} s",
            kind=FailureKind.FFMPEG_STALLED,
        ) from exc
    text = err.decode("utf-8", errors="replace")
    found = _VIDEO.search(text)
    if returncode != 0 or found is None or "Input #0" not in text:
        detail = _summarize([line for line in text.splitlines() if line.strip()][-3:])
        raise FfmpegError(f"not a readable image: {detail}", kind=FailureKind.INVALID_MEDIA)
    return ImageInfo(found.group(1), int(found.group(2)), int(found.group(3)))


def image_to_jpeg(ffmpeg: FfmpegInfo, source: Path, output: Path, *, timeout: float = 60.0) -> None:
    """Re-encode the first picture of ``source`` (WebP, GIF, BMP ...) as a JPEG ``output``."""
    args = [ffmpeg.path, "-hide_banner", "-nostdin", "-v", "error", "-y"]
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", _file_url(source)]
    args += ["-map", "0:v:0", "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "3"]
    args += ["-pix_fmt", "yuvj420p", "-f", "mjpeg", _file_url(output)]
    try:
        returncode, _, err = _run_short(args, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _remove(output)
        raise FfmpegError(
            f"converting the image {source.name} did not finish within {timeout:g} s",
            kind=FailureKind.FFMPEG_STALLED,
        ) from exc
    if returncode != 0:
        _remove(output)
        lines = err.decode("utf-8", errors="replace").splitlines()
        raise FfmpegError(
            f"cannot convert the image: {_summarize(lines)}", kind=FailureKind.INVALID_MEDIA
        )
