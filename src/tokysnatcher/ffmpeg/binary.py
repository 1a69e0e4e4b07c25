"""Finding ffmpeg and building its conversion commands, plus what every ffmpeg module shares.

* :func:`resolve_ffmpeg` picks the binary (``--ffmpeg``, ``TOKYSNATCHER_FFMPEG``, ``PATH``, the
  one bundled by imageio-ffmpeg) and checks it once with ``-version`` under a timeout.
* :func:`convert_command` builds a conversion command line with ffmpeg-python plus our fixed
  options: local input only (``-protocol_whitelist file,pipe``), machine-readable progress,
  errors only on stderr, audio only, our tags and nothing else.
* :func:`file_url`, :func:`global_options`, :func:`run_short`, :func:`summarize_stderr` and
  :func:`remove_output` are the small pieces the other ffmpeg modules build on.

Running a command under the stall watchdog lives in :mod:`tokysnatcher.ffmpeg.run`, probing
and decoding audio in :mod:`tokysnatcher.ffmpeg.probe`, the m4b join and ffmetadata in
:mod:`tokysnatcher.m4b.metadata` and cover images in :mod:`tokysnatcher.ffmpeg.image`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import ffmpeg as ffmpeg_python
from tokysnatcher.errors import FailureKind, FfmpegError, FfmpegNotFoundError
from tokysnatcher.ffmpeg import processes

if TYPE_CHECKING:
    from tokysnatcher.sources.source import Book

ENV_VAR = "TOKYSNATCHER_FFMPEG"
PROTOCOL_WHITELIST = "file,pipe"
# A description tag is a command-line argument: keep it far below the OS's limit for one (128 KiB).
MAX_DESCRIPTION_CHARS = 8000
MP3_VBR_QUALITY = "4"  # libmp3lame VBR V4: ample for speech (SPEC §2)
AAC_ENCODE_BITRATE = "96k"  # only when an m4a is asked for without stream copy
#: Said once per run when ``--format m4a`` meets MP3 audio. It is encoded, not copied: MP3 in an
#: MP4 container is valid, but Apple's players (the reason to ask for .m4a) do not play it
#: reliably, and neither do many car stereos.
MP3_TO_AAC_NOTICE = (
    "the source audio is MP3: --format m4a encodes it to AAC "
    f"({AAC_ENCODE_BITRATE.removesuffix('k')} kb/s), as .m4a players expect; "
    "--format mp3 keeps it as served"
)

FfmpegSource = Literal["option", "env", "path", "bundled"]
SourceFormat = Literal["mpegts", "mp3"]
Target = Literal["mp3", "m4a", "m4a-part"]

_VERSION = re.compile(rb"ffmpeg version (\S+)")
LOG_PREFIX = re.compile(r"^(\[[^\]]* @ 0x[0-9a-f]+\] ?)+")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]+")


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
    description: str | None = None  # the book's; written as description and, unless set, comment

    def metadata(self) -> list[tuple[str, str]]:
        """ffmpeg metadata keys and values; control characters become spaces, blanks drop."""
        description = self.description[:MAX_DESCRIPTION_CHARS] if self.description else None
        pairs = [
            ("title", self.title),
            ("album", self.album),
            ("artist", self.artist),
            ("album_artist", self.album_artist or self.artist),
            ("composer", self.composer),
            ("track", self.track),
            ("genre", self.genre),
            ("date", self.date),
            ("comment", self.comment or description),
            ("description", description),
        ]
        cleaned = [(key, CONTROL_CHARS.sub(" ", value).strip()) for key, value in pairs if value]
        return [(key, value) for key, value in cleaned if value]


def book_genre(book: Book) -> str:
    """The genre tag: the book's genres ("Fiction; Mystery"), else ``Audiobook``."""
    genres = [genre.strip() for genre in book.genres if genre.strip()]
    return "; ".join(genres) if genres else "Audiobook"


def track_tag(number: int, total: int) -> str:
    """The ``track`` tag for chapter ``number`` of ``total``: ``"3/12"``."""
    return f"{number}/{total}"


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
        returncode, out, _ = run_short([path, "-version"], timeout=timeout, doing="-version")
    except FfmpegError as err:
        if err.kind is not FailureKind.FFMPEG_STALLED:
            raise
        raise FfmpegNotFoundError(f"{label}: not an ffmpeg binary ({err})") from err
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
    cover: Path | None = None,
) -> list[str]:
    """The command that turns one chapter's audio into ``output`` (a temporary path).

    ``source="pipe"`` reads stdin (feed it with ``run_ffmpeg(stdin_chunks=...)``).
    ``source_codec`` is the probed audio codec. Targets: ``mp3`` (copy needs an MP3 source,
    else libmp3lame VBR ``-q:a 4``), ``m4a`` (AAC copy, faststart) and ``m4a-part`` (an m4a
    without the faststart rewrite: an intermediate for the m4b merge). The muxer is always
    named, so the temporary name's extension does not matter.

    ``cover`` (a JPEG) is embedded as the attached picture, copied as it is: an ID3 APIC frame
    in an mp3, the ``covr`` atom in an m4a.

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
    in_url = file_url(source) if isinstance(source, Path) else "pipe:0"
    stream = ffmpeg_python.input(in_url, **in_kwargs)
    streams = [stream["a:0"]]
    if cover is not None:
        del out_kwargs["vn"]
        picture = ffmpeg_python.input(
            file_url(cover), format="jpeg_pipe", protocol_whitelist=PROTOCOL_WHITELIST
        )
        streams.append(picture["v:0"])
        out_kwargs.update({"c:v": "copy", "disposition:v:0": "attached_pic"})
        if target == "mp3":  # the APIC picture type players look for
            out_kwargs["metadata:s:v:0"] = "comment=Cover (front)"
    node = ffmpeg_python.output(*streams, file_url(output), **out_kwargs)
    args: list[str] = node.compile(cmd=[ffmpeg.path, *global_options(stdin=from_pipe)])
    metadata = [arg for key, value in tags.metadata() for arg in ("-metadata", f"{key}={value}")]
    args[-1:-1] = metadata  # the output path stays last
    return args


def global_options(*, stdin: bool) -> list[str]:
    """Options every long ffmpeg run takes: quiet stderr, ``-progress pipe:1``, overwrite."""
    options = ["-hide_banner"]
    if not stdin:
        options.append("-nostdin")  # never let ffmpeg read (or wait on) our terminal
    return [*options, "-loglevel", "error", "-nostats", "-progress", "pipe:1", "-y"]


def file_url(path: Path | str) -> str:
    """``path`` as an absolute ``file:`` URL for an ffmpeg input or output."""
    # The explicit file: protocol keeps a name like "Part 1: Intro.mp3" from being read as a
    # protocol prefix, and absolute paths keep the working directory out of it.
    return f"file:{Path(path).absolute()}"


# ---------------------------------------------------------------------------------------------
# Shared by the ffmpeg modules
# ---------------------------------------------------------------------------------------------


def run_short(
    args: list[str],
    *,
    timeout: float,
    doing: str,
    stdin_data: bytes | None = None,
    partial_output: Path | None = None,
) -> tuple[int, bytes, bytes]:
    """Run a short ffmpeg command to the end; ``(returncode, stdout, stderr)``.

    Past ``timeout`` the process is ended, ``partial_output`` removed and
    ``FfmpegError(FFMPEG_STALLED)`` raised ("``doing`` did not finish within N s"). Raises
    ``OSError`` when it cannot start and ``FfmpegError(CANCELLED)`` when the process registry is
    already shut down.
    """
    try:
        return processes.run_bounded(args, timeout=timeout, stdin_data=stdin_data)
    except subprocess.TimeoutExpired as err:
        remove_output(partial_output)
        raise FfmpegError(
            f"{doing} did not finish within {timeout:g} s", kind=FailureKind.FFMPEG_STALLED
        ) from err
    except processes.RegistryClosedError as err:
        raise FfmpegError(str(err), kind=FailureKind.CANCELLED) from err


def summarize_stderr(lines: list[str]) -> str:
    """The first and last meaningful stderr lines, without ffmpeg's ``[ctx @ 0x…]`` prefixes."""
    cleaned = [LOG_PREFIX.sub("", line).strip() for line in lines]
    cleaned = [line for line in cleaned if line and not line.startswith("Press [q]")]
    if not cleaned:
        return "no error message"
    if len(cleaned) == 1 or cleaned[0] == cleaned[-1]:
        return cleaned[-1]
    return f"{cleaned[0]} / {cleaned[-1]}"


def remove_output(path: Path | None) -> None:
    """Remove a partial output file, if there is one; errors are ignored."""
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
