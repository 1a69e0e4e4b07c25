"""``--format m4b``: join a book's per-chapter m4a parts into one ``<Title>.m4b``.

The parts (AAC in MP4, made by the download run in ``<book>/.tokysnatcher/parts/``) are joined
with ffmpeg's concat demuxer and **no re-encoding**; an ffmetadata file adds the tags and one
chapter marker per part, the cover (when the site has one) becomes the attached picture, and
``+faststart`` puts the index first so players open the file at once.

Chapter boundaries are exact: each part's audio frames are counted from its MP4 sample table
(:func:`read_audio_track`) and every packet of the join is stamped at ``frame index * frame
length``, so marker ``k`` starts on the first frame of part ``k``. The result is written in the
work folder under a name of its own, checked (frame count, chapters read back by ffmpeg), then
renamed into the book folder and recorded as the manifest's ``book_file``: the ``.m4b`` name
appears only for a join this process proved. Anything else in the join folder (an orphaned
ffmpeg may finish writing after a ``kill -9``) is discarded by the next run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tokysnatcher.config.settings import Settings
from tokysnatcher.download.plan import Action, BookPlan
from tokysnatcher.errors import DiskError, FailureKind, FfmpegError
from tokysnatcher.ffmpeg.binary import FfmpegInfo, Tags, book_genre, remove_output
from tokysnatcher.ffmpeg.image import ImageFormat
from tokysnatcher.ffmpeg.run import run_ffmpeg
from tokysnatcher.library.manifest import ChapterCheck, ManifestManager
from tokysnatcher.library.manifest_schema import JOIN_DIR_NAME, WORK_DIR_NAME
from tokysnatcher.library.sidecars import COVER_NAME
from tokysnatcher.m4b.cover import fetch_cover
from tokysnatcher.m4b.metadata import (
    concat_list_text,
    ffmetadata_text,
    m4b_join_command,
    read_metadata,
)
from tokysnatcher.m4b.mp4 import AudioTrack, read_audio_track
from tokysnatcher.net.http import Fetcher
from tokysnatcher.utils.atomic import disk_error_for, fsync_dir, sha256_file
from tokysnatcher.utils.links import fresh_dir, fsync_file, remove_tree

# The faststart pass rewrites the whole file without printing progress: allow it some time even
# when --stall-timeout is short.
MIN_JOIN_STALL = 60.0
Log = Callable[[str, str], None]


@dataclass(frozen=True, kw_only=True)
class M4bResult:
    """The outcome of :func:`make_book_file`."""

    path: Path
    chapters: int
    seconds: float
    size: int
    rebuilt: bool  # False when the m4b already there verified against the manifest
    cover: bool
    transcoded: bool  # the parts are AAC encodes of an MP3 source
    parts_dir: Path
    parts_bytes: int  # disk space the parts take
    kept_parts: tuple[Path, ...] = ()


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The join
# ---------------------------------------------------------------------------------------------


def check_parts(parts: Sequence[Path]) -> list[AudioTrack]:
    """Read every part; all must be AAC of one sample rate, channel count and frame length."""
    tracks = [read_audio_track(part) for part in parts]
    first = tracks[0]

    def describe(track: AudioTrack) -> str:
        return f"{track.codec} {track.sample_rate} Hz, {track.channels} ch"

    for part, track in zip(parts, tracks, strict=True):
        if track.codec != "mp4a" or track.frames == 0:
            raise FfmpegError(
                f"{part.name} holds {track.codec} audio, not AAC", kind=FailureKind.INVALID_MEDIA
            )
        same = (track.timescale, track.frame_length, track.channels, track.sample_rate) == (
            first.timescale,
            first.frame_length,
            first.channels,
            first.sample_rate,
        )
        if not same:
            raise FfmpegError(
                f"the chapters differ in audio format ({parts[0].name}: {describe(first)}; "
                f"{part.name}: {describe(track)}); one m4b needs one format",
                kind=FailureKind.INVALID_MEDIA,
                hint="Use --format m4a for one file per chapter.",
            )
    return tracks


def join_parts(
    ffmpeg: FfmpegInfo,
    parts: Sequence[tuple[Path, str]],
    *,
    tags: list[tuple[str, str]],
    output: Path,
    workdir: Path,
    stall_timeout: float,
    cover: tuple[Path, str] | None = None,
    stop: threading.Event | None = None,
    kill_grace: float = 5.0,
    on_progress: Callable[[float], None] | None = None,
) -> list[AudioTrack]:
    """Join ``parts`` (path, chapter title) into the m4b ``output`` and check the result.

    ``cover`` is an image path and its format (``jpeg`` or ``png``). Returns the parts' tracks.
    ``on_progress(fraction)`` hears how far ffmpeg got (0..1), from this thread.
    Raises ``FfmpegError`` (ffmpeg failed, stalled or was stopped; a part is unusable; the
    result does not check out) or ``DiskError``.
    """
    paths = [path for path, _ in parts]
    tracks = check_parts(paths)
    unit = tracks[0].frame_length
    chapters: list[tuple[int, int, str]] = []
    position = 0
    for (_, title), track in zip(parts, tracks, strict=True):
        chapters.append((position, position + track.frames * unit, title))
        position += track.frames * unit
    concat_list, metadata = workdir / "parts.ffconcat", workdir / "tags.ffmetadata"
    try:
        concat_list.write_text(concat_list_text(paths), encoding="utf-8")
        metadata.write_text(
            ffmetadata_text(tags, chapters, timebase=tracks[0].timescale), encoding="utf-8"
        )
    except OSError as err:
        raise disk_error_for(err, workdir) from err
    except ValueError as err:
        raise FfmpegError(str(err), kind=FailureKind.INVALID_MEDIA) from err
    args = m4b_join_command(
        ffmpeg,
        concat_list=concat_list,
        metadata=metadata,
        output=output,
        frame_samples=unit,
        cover=cover[0] if cover else None,
        cover_format="png" if cover and cover[1] == "png" else "jpeg",
    )
    run_ffmpeg(
        args,
        stall_timeout=max(stall_timeout, MIN_JOIN_STALL),
        kill_grace=kill_grace,
        stop=stop,
        partial_output=output,
        duration_hint=position / tracks[0].timescale,
        on_progress=(
            None
            if on_progress is None
            else lambda sample: on_progress(
                min(1.0, sample.seconds_done * tracks[0].timescale / position) if position else 0.0
            )
        ),
    )
    _check_join(ffmpeg, output, tracks, len(parts))
    return tracks


def _check_join(ffmpeg: FfmpegInfo, output: Path, parts: list[AudioTrack], chapters: int) -> None:
    """The m4b holds every frame of every part, on the exact timeline, with every chapter."""
    joined = read_audio_track(output)
    frames = sum(track.frames for track in parts)
    expected = frames * parts[0].frame_length
    problem = None
    if joined.frames != frames or joined.duration != expected:
        problem = f"{joined.frames} frames ({joined.duration} samples), expected {frames}"
    elif len(found := read_metadata(ffmpeg, output).chapters) != chapters:
        problem = f"{len(found)} chapter markers, expected {chapters}"
    if problem is not None:
        remove_output(output)
        raise FfmpegError(
            f"the joined m4b failed its check: {problem}", kind=FailureKind.INVALID_MEDIA
        )


# ---------------------------------------------------------------------------------------------
# The book file of a run
# ---------------------------------------------------------------------------------------------


def book_tags(plan: BookPlan, name: str) -> list[tuple[str, str]]:
    """The m4b's global tags (SPEC §3); ``media_type`` 2 is iTunes' "Audiobook"."""
    book = plan.book
    tags = Tags(
        title=name.removesuffix(".m4b") if "(chapters " in name else book.title,
        album=book.title,
        artist=book.author,
        album_artist=book.author,
        composer=book.narrator,
        genre=book_genre(book),
        date=str(book.year) if book.year else None,
        description=book.description,
    )
    return [*tags.metadata(), ("media_type", "2")]


def make_book_file(
    plan: BookPlan,
    settings: Settings,
    ffmpeg: FfmpegInfo,
    fetcher: Fetcher,
    stop: threading.Event,
    manifest: ManifestManager,
    *,
    log: Log,
    on_progress: Callable[[float], None] | None = None,
) -> M4bResult:
    """Make (or, on a resume, verify) the book's m4b from its complete parts.

    The m4b is rebuilt unless this run fetched nothing and the manifest's ``book_file`` has the
    same name and still matches its size and SHA-256. ``manifest`` is the run's (it holds the
    folder's lock). ``log(message, level)`` gets messages, ``on_progress`` the join's share done.
    """
    name = plan.book_file
    if name is None:
        raise ValueError("an m4b plan without a book file name")
    parts = [(c.dest, c.title) for c in plan.chapters]
    for path, _ in parts:
        entry = manifest.chapter(path.name)
        if entry is None or entry.size is None or not _has_size(path, entry.size):
            if entry is not None:
                manifest.mark_pending(path.name)
            raise FfmpegError(
                f"the part {path.name} is missing or changed since it was downloaded",
                kind=FailureKind.INVALID_MEDIA,
                hint="Run the same command with --resume to fetch it again.",
            )
    target = plan.folder / name
    current = manifest.book_file
    fetched = any(c.action is not Action.SKIP for c in plan.chapters)
    if (
        not fetched
        and current is not None
        and current.name == name
        and manifest.check_book_file() is ChapterCheck.OK
    ):
        log(f"{name} is already complete (size and SHA-256 match)", "info")
        tracks = [read_audio_track(path) for path, _ in parts]
        result = _result(target, tracks, [path for path, _ in parts], rebuilt=False, cover=False)
    else:
        result = _build(plan, settings, ffmpeg, fetcher, stop, manifest, name, log, on_progress)
    if settings.keep_parts:
        kept = tuple(_keep_part(path, plan.folder) for path, _ in parts)
        result = replace(result, kept_parts=kept)
    return result


def _build(
    plan: BookPlan,
    settings: Settings,
    ffmpeg: FfmpegInfo,
    fetcher: Fetcher,
    stop: threading.Event,
    manifest: ManifestManager,
    name: str,
    log: Log,
    on_progress: Callable[[float], None] | None,
) -> M4bResult:
    workdir = plan.folder / WORK_DIR_NAME / JOIN_DIR_NAME
    parts = [(c.dest, c.title) for c in plan.chapters]
    try:
        fresh_dir(workdir)  # nothing a killed join left behind is used
    except OSError as err:
        raise disk_error_for(err, workdir) from err
    _check_space(plan.folder, [path for path, _ in parts])
    cover: tuple[Path, ImageFormat] | None = None
    if settings.no_cover:
        log("cover skipped (--no-cover)", "info")
    elif not plan.book.cover_url:
        log("the site gives no cover for this book", "info")
    elif not settings.no_sidecars:
        # The run fetched it once already, for cover.jpg beside the m4b (or found none usable).
        if manifest.check_sidecar(COVER_NAME) is ChapterCheck.OK:
            cover = (plan.folder / COVER_NAME, "jpeg")
    elif fetched_cover := fetch_cover(plan.book.cover_url, fetcher, ffmpeg, workdir, log=log):
        cover = (fetched_cover.path, fetched_cover.format)
    # A name of this join's own: an orphaned ffmpeg of a killed run, still finishing its file,
    # can never write (or read back, for +faststart) the file this join makes.
    output = workdir / f"book.{secrets.token_hex(4)}.m4b"
    log(f"joining {len(parts)} chapters into {name}", "info")
    tracks = join_parts(
        ffmpeg,
        parts,
        tags=book_tags(plan, name),
        output=output,
        workdir=workdir,
        cover=cover,
        stall_timeout=settings.stall_timeout,
        stop=stop,
        kill_grace=settings.kill_grace,
        on_progress=on_progress,
    )
    target = plan.folder / name
    try:
        fsync_file(output)
        size, digest = sha256_file(output)
        output.replace(target)
        fsync_dir(plan.folder)
    except OSError as err:
        raise disk_error_for(err, target) from err
    manifest.set_book_file(name, size, digest)
    with contextlib.suppress(OSError):
        remove_tree(workdir)
    paths = [path for path, _ in parts]
    return _result(target, tracks, paths, rebuilt=True, cover=cover is not None)


def _result(
    target: Path, tracks: list[AudioTrack], parts: list[Path], *, rebuilt: bool, cover: bool
) -> M4bResult:
    samples = sum(t.frames for t in tracks) * tracks[0].frame_length
    return M4bResult(
        path=target,
        chapters=len(tracks),
        seconds=samples / tracks[0].timescale,
        size=target.stat().st_size,
        rebuilt=rebuilt,
        cover=cover,
        transcoded=any(t.priming > 0 for t in tracks),
        parts_dir=parts[0].parent,
        parts_bytes=sum(path.stat().st_size for path in parts),
    )


def _has_size(path: Path, size: int) -> bool:
    """A cheap check that a part is still the file the manifest recorded (the run hashed it)."""
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_size == size
    except OSError:
        return False


def _check_space(folder: Path, parts: list[Path]) -> None:
    need = sum(path.stat().st_size for path in parts) + 16 * 2**20  # tags, index, cover
    free = shutil.disk_usage(folder).free
    if free < need:
        raise DiskError(
            f"not enough free space in {folder} to join the chapters: {free // 2**20} MiB free, "
            f"about {need // 2**20} MiB needed"
        )


def _keep_part(part: Path, folder: Path) -> Path:
    """Put ``part`` next to the m4b under its own name: a hard link, else a copy."""
    dest = folder / part.name
    temp = folder / f".{part.name}.keep.tmp"
    try:
        temp.unlink(missing_ok=True)
        try:
            os.link(part, temp)
        except OSError:  # no hard links here (FAT, some network shares): copy instead
            shutil.copyfile(part, temp)
        temp.replace(dest)
    except OSError as err:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise disk_error_for(err, dest) from err
    return dest
