"""``--doctor``: is everything a download needs in working order? One :class:`Check` per row.

Python; the ffmpeg binary and, by a tiny real run each, the three things a run asks of it
(AAC stream copy into an m4a, MP3 encoding, the MP4 mux with chapters of an m4b); each source's
reachability, asked through the :class:`~tokysnatcher.sources.source.Source` (which alone knows
its URLs); the library folder (writable, free space, the longest name and path); the config
file; the proxy variables; the data folder (crash reports, the database).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from tokysnatcher.config.settings import SOURCE_NAMES, Settings
from tokysnatcher.diagnostics.redact import redact
from tokysnatcher.errors import TokysnatcherError
from tokysnatcher.utils.filenames import max_path_units
from tokysnatcher.utils.units import format_bytes

if TYPE_CHECKING:
    from tokysnatcher.ffmpeg.binary import FfmpegInfo, Target

# Below this much free space a folder is worth a warning: one long book is about this large.
LOW_SPACE = 1024**3
# Sanitized names are at most 200 bytes (SPEC §3) plus a temporary suffix and an extension.
NAME_NEEDED = 200 + 32
_FFMPEG_TIMEOUT = 30.0
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"  # works, but worth knowing; does not fail the doctor
    FAILED = "failed"
    SKIPPED = "skipped"  # not checked: what it needs failed its own check


@dataclass(frozen=True, kw_only=True)
class Check:
    """One row: what was checked, how it went, what was found and, for a problem, the fix."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def passed(self) -> bool:
        return self.status in (Status.OK, Status.WARNING)


def _python() -> Check:
    version = platform.python_version()
    where = f"{platform.python_implementation()} on {platform.system()} {platform.machine()}"
    # An older Python cannot install tokysnatcher (requires-python), so this one is fine.
    return Check(name="python", status=Status.OK, detail=f"{version} ({where})")


# -- ffmpeg ------------------------------------------------------------------------------------
_ABILITIES = ("ffmpeg: AAC copy", "ffmpeg: MP3 encode", "ffmpeg: MP4 mux")


def _ffmpeg(settings: Settings) -> list[Check]:
    from tokysnatcher.errors import FfmpegNotFoundError
    from tokysnatcher.ffmpeg.binary import resolve_ffmpeg

    try:
        info = resolve_ffmpeg(settings.ffmpeg)
    except FfmpegNotFoundError as err:
        found = Check(name="ffmpeg", status=Status.FAILED, detail=err.message, fix=err.hint)
        skipped = [
            Check(name=name, status=Status.SKIPPED, detail="no usable ffmpeg")
            for name in _ABILITIES
        ]
        return [found, *skipped]
    found = Check(
        name="ffmpeg", status=Status.OK, detail=f"{info.version} ({info.source}: {info.path})"
    )
    with tempfile.TemporaryDirectory(prefix="tokysnatcher-doctor-") as folder:
        return [found, *_abilities(info, Path(folder))]


def _abilities(info: FfmpegInfo, folder: Path) -> list[Check]:
    """A one-second tone made into each kind of output a run makes, by the run's own commands."""
    from tokysnatcher.ffmpeg.binary import Tags, convert_command
    from tokysnatcher.m4b.metadata import concat_list_text, ffmetadata_text, m4b_join_command

    source = folder / "tone.ts"
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=44100"]
    aac = ["-c:a", "aac", "-b:a", "64k", "-f", "mpegts", str(source)]
    quiet = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    made = _run([info.path, *quiet, *tone, *aac], source)
    if made:
        problem = f"cannot make a test tone in AAC ({made})"
        fix = "Install a full ffmpeg build (one with the aac encoder and lavfi), or use --ffmpeg."
        return [
            Check(name=name, status=Status.FAILED, detail=problem, fix=fix) for name in _ABILITIES
        ]
    tags = Tags(title="Tone", album="Doctor", artist="tokysnatcher")
    m4a, mp3, m4b = folder / "tone.m4a", folder / "tone.mp3", folder / "tone.m4b"

    def convert(output: Path, *, copy: bool) -> list[str]:
        target: Target = "m4a" if copy else "mp3"
        return convert_command(
            info,
            source=source,
            source_format="mpegts",
            output=output,
            target=target,
            codec_copy=copy,
            tags=tags,
            source_codec="aac",
        )

    concat, meta = folder / "parts.txt", folder / "meta.txt"
    concat.write_text(concat_list_text([m4a]), "utf-8")
    meta.write_text(ffmetadata_text([("title", "Doctor")], [(0, 44100, "Tone")], timebase=44100))
    steps: list[tuple[str, Callable[[], list[str]], Path, str, str]] = [
        (
            _ABILITIES[0],
            lambda: convert(m4a, copy=True),
            m4a,
            "AAC audio copied into an m4a",
            "--format m4a and m4b need it: install a recent ffmpeg, or use --ffmpeg.",
        ),
        (
            _ABILITIES[1],
            lambda: convert(mp3, copy=False),
            mp3,
            "AAC audio encoded to MP3 (libmp3lame)",
            "--format mp3 needs an ffmpeg built with libmp3lame: install one, use --ffmpeg, "
            "or use --format m4a.",
        ),
        (
            _ABILITIES[2],
            lambda: m4b_join_command(
                info, concat_list=concat, metadata=meta, output=m4b, frame_samples=1024
            ),
            m4b,
            "an m4b with a chapter marker",
            "--format m4b needs the mp4 (ipod) muxer: install a recent ffmpeg, or use --ffmpeg.",
        ),
    ]
    checks = []
    for name, command, output, did, fix in steps:
        problem = _run(command(), output)
        if problem:
            checks.append(Check(name=name, status=Status.FAILED, detail=problem, fix=fix))
        else:
            checks.append(Check(name=name, status=Status.OK, detail=did))
    return checks


def _run(args: list[str], output: Path) -> str:
    """Run one short ffmpeg command; what went wrong, or "" when ``output`` was made."""
    from tokysnatcher.errors import FfmpegError
    from tokysnatcher.ffmpeg.binary import run_short, summarize_stderr

    try:
        code, _, stderr = run_short(
            args, timeout=_FFMPEG_TIMEOUT, doing="ffmpeg", partial_output=output
        )
    except (FfmpegError, OSError) as err:
        return str(err)
    if code != 0:
        return summarize_stderr(stderr.decode("utf-8", "replace").splitlines())
    if not output.is_file() or output.stat().st_size == 0:
        return "no output"
    return ""


# -- the sites ---------------------------------------------------------------------------------
def _sources(settings: Settings) -> list[Check]:
    from tokysnatcher.net.http import make_session
    from tokysnatcher.sources.registry import open_source

    # One try per question: the doctor reports what is, it does not wait out a bad minute.
    quick = settings.replace(segment_retries=0, connect_timeout=min(settings.connect_timeout, 5))
    session = make_session(1)
    try:
        return [
            Check(
                name=step.name,
                status=Status.OK if step.ok else Status.FAILED,
                detail=step.detail,
                fix=step.fix,
            )
            for name in SOURCE_NAMES  # every source a reference may pick
            for step in open_source(
                session, quick.replace(source=name), wait=threading.Event().wait
            ).health()
        ]
    finally:
        session.close()


# -- folders -----------------------------------------------------------------------------------
def _existing(folder: Path) -> Path:
    """``folder``, or its nearest parent that exists (where a run would create it)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return folder


def _writable(folder: Path) -> str:
    """What keeps a file from being written in ``folder`` ("" when nothing does)."""
    probe = _existing(folder)
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".tokysnatcher-doctor-"):
            pass
    except OSError as err:
        return f"cannot write in {probe} ({err.strerror or err})"
    return ""


def _library(settings: Settings) -> list[Check]:
    folder = settings.directory
    where = folder if folder.exists() else _existing(folder)
    problem = _writable(folder)
    fix = "Choose another folder with -d DIR, or make this one writable."
    if problem:
        return [Check(name="library folder", status=Status.FAILED, detail=problem, fix=fix)]
    created = "" if folder.exists() else f" (created on the first download, in {where})"
    checks = [Check(name="library folder", status=Status.OK, detail=f"{folder} writable{created}")]
    free = shutil.disk_usage(where).free
    checks.append(
        Check(
            name="free space",
            status=Status.OK if free >= LOW_SPACE else Status.WARNING,
            detail=f"{format_bytes(free)} free in {where}",
            fix="" if free >= LOW_SPACE else "Free some space, or choose another folder with -d.",
        )
    )
    checks.append(_name_limits(where))
    return checks


def _name_limits(folder: Path) -> Check:
    if sys.platform == "win32":  # no pathconf: NTFS's names, and the path budget tokysnatcher keeps
        return Check(
            name="name length",
            status=Status.OK,
            detail=f"names up to 255 characters, paths kept within {max_path_units()}",
        )
    else:
        try:
            name_max = os.pathconf(folder, "PC_NAME_MAX")
            path_max = os.pathconf(folder, "PC_PATH_MAX")
        except (OSError, ValueError):
            return Check(name="name length", status=Status.OK, detail="not reported by this system")
    detail = f"names up to {name_max} bytes, paths up to {path_max}"
    if name_max < NAME_NEEDED:
        return Check(
            name="name length",
            status=Status.WARNING,
            detail=f"{detail}: long chapter titles are shortened further",
            fix="A file system with 255-byte names (most do) keeps titles whole.",
        )
    return Check(name="name length", status=Status.OK, detail=detail)


def _data_folder(settings: Settings) -> list[Check]:
    """The tool's own folder; the database's check (it opens, its schema is current) joins
    this list once there is one."""
    problem = _writable(settings.data_dir)
    if problem:
        return [
            Check(
                name="data folder",
                status=Status.FAILED,
                detail=problem,
                fix="Set TOKYSNATCHER_DATA_DIR (or data-dir in the config file) to a writable "
                "folder; crash reports go there.",
            )
        ]
    return [Check(name="data folder", status=Status.OK, detail=f"{settings.data_dir} writable")]


# -- configuration -----------------------------------------------------------------------------
def _config(path: Path, error: TokysnatcherError | None) -> Check:
    if error is not None:
        return Check(name="config file", status=Status.FAILED, detail=error.message, fix=error.hint)
    if not path.is_file():
        return Check(name="config file", status=Status.OK, detail=f"none at {path} (defaults)")
    return Check(name="config file", status=Status.OK, detail=f"{path} parses")


def _proxies(env: Mapping[str, str]) -> Check:
    found = []
    for name in _PROXY_VARIABLES:
        for variable in (name, name.lower()):
            if env.get(variable):
                found.append(f"{variable}={redact(env[variable])}")
    if not found:
        return Check(name="proxy", status=Status.OK, detail="no proxy variables set")
    return Check(
        name="proxy",
        status=Status.WARNING,
        detail=f"{', '.join(found)}; tokysnatcher connects directly and does not use them",
        fix="Where the network allows only the proxy, downloads cannot reach the site.",
    )


def run_checks(
    settings: Settings,
    *,
    config_path: Path,
    config_error: TokysnatcherError | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Check]:
    """Every check, in the order shown."""
    env = os.environ if env is None else env
    return [
        _python(),
        *_ffmpeg(settings),
        *_sources(settings),
        *_library(settings),
        _config(config_path, config_error),
        _proxies(env),
        *_data_folder(settings),
    ]
