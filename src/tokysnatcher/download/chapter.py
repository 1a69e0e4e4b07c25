"""The work of one chapter attempt: resolve its playlist, fetch a segment, convert the result.

These functions run on worker threads and touch only the chapter's own work folder and its
final file. They raise :class:`DownloadError` (with a failure kind) and never write the manifest:
the scheduler in ``download/scheduler.py`` owns all shared state.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from tokysnatcher.config.settings import Settings
from tokysnatcher.download.retry import MAX_QUICK_WAIT, segment_backoff
from tokysnatcher.download.state import Chapter
from tokysnatcher.errors import DownloadError, FailureKind, SourceError
from tokysnatcher.ffmpeg.binary import (
    MP3_TO_AAC_NOTICE,
    FfmpegInfo,
    Tags,
    Target,
    book_genre,
    convert_command,
    track_tag,
)
from tokysnatcher.ffmpeg.probe import audio_seconds, probe
from tokysnatcher.ffmpeg.run import run_ffmpeg
from tokysnatcher.library.manifest_schema import ExpectedDuration
from tokysnatcher.net.hls import (
    DURATION_TOLERANCE,
    MAX_DIRECT_FILE_BYTES,
    MAX_PLAYLIST_BYTES,
    Segment,
    decode_playlist,
    parse_media_playlist,
    variant_of,
)
from tokysnatcher.net.http import Fetcher
from tokysnatcher.net.urls import is_http_url
from tokysnatcher.sources.source import Book, Source, Track
from tokysnatcher.utils.atomic import atomic_write_text, disk_error_for, sha256_file
from tokysnatcher.utils.links import (
    fresh_dir,
    fsync_file,
    is_real_dir,
    open_nofollow,
    read_text_nofollow,
    remove_tree,
)

T = TypeVar("T")
# How often one request may move on to a token that other requests renewed meanwhile.
_MAX_TOKEN_MOVES = 3
_FILE_CHUNK = 1024 * 1024
# The API states a direct file's duration in whole seconds (``"duration": 1234``), perhaps cut
# rather than rounded: a second more than a playlist's sum of EXTINF durations.
_API_DURATION_TOLERANCE = DURATION_TOLERANCE + 1.0


@dataclass(kw_only=True)
class ChapterJob:
    """One chapter of the run: what its attempts work on, and its :class:`Chapter` state.

    The scheduler thread alone changes it; workers read it (``state.generation`` says whether
    their attempt is still the current one).
    """

    index: int  # 1-based chapter number in the book
    track: Track
    dest: Path  # the chapter's final file
    workdir: Path  # <book>/.tokysnatcher/<NN>: segments and partial output
    state: Chapter
    live: bool = False
    segments: tuple[Segment, ...] = ()
    remaining: int = 0  # requests of this attempt not yet on disk
    # What the site declares this attempt's audio lasts; a shorter or longer result is refused.
    expected: ExpectedDuration | None = None

    @property
    def key(self) -> str:
        return self.dest.name

    @property
    def generation(self) -> int:
        return self.state.generation

    def source_files(self) -> list[Path]:
        if self.track.is_direct:
            return [self.workdir / "source.mp3"]
        return [segment_path(self.workdir, s) for s in self.segments]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A chapter's checked playlist: its segments, length and the length the result must have."""

    segments: tuple[Segment, ...]
    duration: float | None
    expected: ExpectedDuration | None


def declared_length(track: Track) -> ExpectedDuration | None:
    """What a direct file must last: the API's whole seconds, when it states any."""
    declared = track.duration
    if declared is not None and math.isfinite(declared) and declared > 0:
        return ExpectedDuration(declared, _API_DURATION_TOLERANCE)
    return None


def segment_path(workdir: Path, segment: Segment) -> Path:
    return workdir / f"{segment.index:06d}.ts"


class ChapterSteps(Protocol):
    """The steps of a chapter attempt, as the scheduler and its workers call them.

    :class:`ChapterWork` is the real one; the scheduler's tests use a fake.
    """

    settings: Settings
    stop: threading.Event

    def resolve(
        self,
        job: ChapterJob,
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> Resolved: ...

    def fetch_segment(
        self,
        job: ChapterJob,
        segment: Segment,
        on_bytes: Callable[[int], None],
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> int: ...

    def fetch_direct(
        self,
        job: ChapterJob,
        on_bytes: Callable[[int], None],
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> int: ...

    def convert(
        self, job: ChapterJob, on_progress: Callable[[float], None]
    ) -> tuple[int, str, ExpectedDuration | None]: ...

    def connections_in_use(self) -> int: ...


@dataclass(kw_only=True)
class ChapterWork:
    """What every chapter attempt needs: the book, the site client, limits, the stop flag."""

    book: Book
    source: Source
    fetcher: Fetcher
    ffmpeg: FfmpegInfo
    settings: Settings
    target: Target  # "mp3", "m4a" or "m4a-part" (an m4b's per-chapter part)
    total_tracks: int
    stop: threading.Event
    log: Callable[[str, str], None]
    cover: Path | None = None  # a JPEG every chapter file embeds (not the parts of an m4b)

    _renewal_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _announced_generation: int = field(default=0, init=False, repr=False)
    _encode_noticed: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def connections_in_use(self) -> int:
        """Requests open right now, over every worker."""
        return self.fetcher.transfer.active

    # -- requests --------------------------------------------------------------------------
    def request(
        self,
        url: str,
        what: str,
        call: Callable[[dict[str, str]], T],
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> T:
        """Run one request with quick retries and stream-token renewal (SPEC §5).

        A transient failure is retried up to ``segment_retries`` times after a short backoff
        (honouring ``Retry-After`` up to ``MAX_QUICK_WAIT``); a longer wait, a permanent kind or
        an exhausted budget fails the request, and so the chapter attempt. On 401/403 the
        request first moves to credentials another request renewed meanwhile, else renews them
        once itself (one renewal serves every chapter). ``on_retry(error,
        number, delay)`` hears of each quick retry before its wait.
        """
        failures = 0
        renewed = False
        moved_on = 0
        while True:
            if self.stop.is_set() or (cancelled is not None and cancelled()):
                raise DownloadError(f"{what}: cancelled", kind=FailureKind.CANCELLED)
            headers, generation = self.source.headers(url)
            try:
                return call(headers)
            except DownloadError as err:
                if err.kind is FailureKind.AUTH and headers:
                    if (
                        self.source.headers_generation() != generation
                        and moved_on < _MAX_TOKEN_MOVES
                    ):
                        moved_on += 1
                        continue
                    if not renewed:
                        renewed = True
                        self._renew_token(generation)
                        continue
                failures += 1
                retry_after = err.retry_after or 0.0
                if (
                    not err.transient
                    or err.kind is FailureKind.AUTH
                    or failures > self.settings.segment_retries
                    or retry_after > MAX_QUICK_WAIT
                    or self.stop.is_set()
                ):
                    raise
                delay = segment_backoff(
                    failures,
                    base=self.settings.segment_retry_delay,
                    retry_after=err.retry_after,
                    cap=MAX_QUICK_WAIT,
                )
                if on_retry is not None:
                    on_retry(err, failures, delay)
                if self.stop.wait(delay):
                    raise DownloadError(f"{what}: cancelled", kind=FailureKind.CANCELLED) from err

    def _renew_token(self, generation: int) -> None:
        try:
            new_generation = self.source.renew_headers(generation)
        except SourceError as err:
            raise DownloadError(
                f"the credentials expired and could not be renewed: {err.message}",
                kind=FailureKind.AUTH,
            ) from err
        with self._renewal_lock:  # many requests see one renewal: say it once
            announce = new_generation > max(generation, self._announced_generation)
            self._announced_generation = max(self._announced_generation, new_generation)
        if announce:
            self.log(self.source.renewed_message, "info")

    # -- chapter steps -----------------------------------------------------------------------
    def resolve(
        self,
        job: ChapterJob,
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> Resolved:
        """Fetch and check the chapter playlist; keep earlier segments only if it is unchanged."""
        url = job.track.url
        what = f"chapter {job.index} playlist"
        text = self._playlist_text(url, what, cancelled, on_retry)
        variant = variant_of(text, url)
        if variant is not None:
            url = variant.url
            text = self._playlist_text(url, what, cancelled, on_retry)
        media = parse_media_playlist(text, url)
        signature = "\n".join(urlsplit(s.url).path for s in media.segments) + "\n"
        marker = job.workdir / "segments.txt"
        kept = is_real_dir(job.workdir) and (
            read_text_nofollow(marker, len(signature.encode("utf-8")) + 1) == signature
        )
        try:
            if not kept:
                fresh_dir(job.workdir)
                atomic_write_text(marker, signature)
        except OSError as err:
            raise disk_error_for(err, job.workdir) from err
        expected = ExpectedDuration(media.duration, media.tolerance) if media.duration else None
        return Resolved(media.segments, media.duration or job.track.duration, expected)

    def _playlist_text(
        self,
        url: str,
        what: str,
        cancelled: Callable[[], bool] | None,
        on_retry: Callable[[DownloadError, int, float], None] | None,
    ) -> str:
        body = self.request(
            url,
            what,
            lambda headers: self.fetcher.fetch_bytes(
                url,
                headers,
                what=what,
                limit=MAX_PLAYLIST_BYTES,
                cancelled=cancelled,
                hop_headers=self.hop_headers,
            ),
            cancelled,
            on_retry,
        )
        return decode_playlist(body)

    def fetch_segment(
        self,
        job: ChapterJob,
        segment: Segment,
        on_bytes: Callable[[int], None],
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> int:
        """Fetch one segment into the chapter's work folder; returns its size."""
        what = f"chapter {job.index} segment {segment.index + 1}"
        dest = segment_path(job.workdir, segment)
        return self.request(
            segment.url,
            what,
            lambda headers: self.fetcher.fetch_to_file(
                segment.url,
                headers,
                dest,
                what=what,
                limit=segment.size_limit,
                on_bytes=on_bytes,
                cancelled=cancelled,
                hop_headers=self.hop_headers,
            ),
            cancelled,
            on_retry,
        )

    def fetch_direct(
        self,
        job: ChapterJob,
        on_bytes: Callable[[int], None],
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> int:
        """A track that is a plain audio file: one request, same limits and retries."""
        url = job.track.url
        if not is_http_url(url):
            raise DownloadError(
                f"chapter {job.index}: not an http(s) URL", kind=FailureKind.INVALID_MEDIA
            )
        try:
            if not is_real_dir(job.workdir):
                fresh_dir(job.workdir)
        except OSError as err:
            raise disk_error_for(err, job.workdir) from err
        what = f"chapter {job.index} audio file"
        dest = job.workdir / "source.mp3"
        size = self.request(
            url,
            what,
            lambda headers: self.fetcher.fetch_to_file(
                url,
                headers,
                dest,
                what=what,
                limit=MAX_DIRECT_FILE_BYTES,
                on_bytes=on_bytes,
                cancelled=cancelled,
                hop_headers=self.hop_headers,
            ),
            cancelled,
            on_retry,
        )
        try:
            problem = listed_mismatch(dest, size, job.track)
        except OSError as err:
            raise disk_error_for(err, dest) from err
        if problem is not None:
            # Never kept: the retry fetches the file from its first byte.
            with contextlib.suppress(OSError):
                dest.unlink()
            raise DownloadError(
                f"chapter {job.index}: {problem}", kind=FailureKind.INVALID_MEDIA, retry=True
            )
        return size

    def hop_headers(self, url: str) -> dict[str, str]:
        """What a redirect's target gets: the site's headers for that URL (none off its hosts)."""
        return self.source.headers(url).headers

    def tags(self, job: ChapterJob) -> Tags:
        return Tags(
            title=job.state.title,
            album=self.book.title,
            artist=self.book.author,
            album_artist=self.book.author,
            composer=self.book.narrator or job.track.narrator,
            track=track_tag(job.index, self.total_tracks),
            genre=book_genre(self.book),
            date=str(self.book.year) if self.book.year else None,
            description=self.book.description,
        )

    def convert(
        self, job: ChapterJob, on_progress: Callable[[float], None]
    ) -> tuple[int, str, ExpectedDuration | None]:
        """Turn the fetched audio into the chapter's file; returns (size, sha256, expected length).

        The result must be as long as the site declared (``job.expected``). Audio that is not
        (a segment cut short, junk in its place) fails the attempt as ``invalid_media`` that is
        retried, and its segments are dropped: which one is bad cannot be told, so the retry
        fetches them all again.
        """
        sources = job.source_files()
        missing = [path.name for path in sources if path.is_symlink() or not path.is_file()]
        if missing:
            # Never convert around a hole: the attempt fails and the retry fetches what is missing.
            raise DownloadError(
                f"chapter {job.index}: {len(missing)} of {len(sources)} parts missing "
                f"({missing[0]} ...)",
                kind=FailureKind.NETWORK,
            )
        info = probe(self.ffmpeg, sources[0], timeout=max(self.settings.stall_timeout, 10.0))
        if info.codec not in ("aac", "mp3"):
            raise DownloadError(
                f"chapter {job.index}: unsupported audio codec {info.codec!r}",
                kind=FailureKind.INVALID_MEDIA,
            )
        if self.target == "mp3":
            copy, extension = info.codec == "mp3", "mp3"
        else:
            copy, extension = info.codec == "aac", "m4a"
            if self.target == "m4a" and not copy and self._encode_noticed.acquire(blocking=False):
                # Never released: the first MP3 chapter says it for the whole run.
                self.log(MP3_TO_AAC_NOTICE, "warning")
        output = job.workdir / f"output.{extension}"
        try:
            # ffmpeg -y writes through a link: whatever a kept work folder holds under this name
            # (an earlier output, or a planted link) goes first.
            remove_tree(output)
        except OSError as err:
            raise disk_error_for(err, output) from err
        args = convert_command(
            self.ffmpeg,
            source="pipe",
            source_format="mp3" if job.track.is_direct else "mpegts",
            output=output,
            target=self.target,
            codec_copy=copy,
            tags=self.tags(job),
            source_codec=info.codec,
            cover=self.cover if self.target != "m4a-part" else None,
        )
        run_ffmpeg(
            args,
            stall_timeout=self.settings.stall_timeout,
            kill_grace=self.settings.kill_grace,
            stop=self.stop,
            stdin_chunks=_read_files(sources),
            partial_output=output,
            on_progress=lambda sample: on_progress(sample.seconds_done),
            duration_hint=job.state.duration,
        )
        self._check_length(job, output)
        try:
            size, digest = sha256_file(output)
            fsync_file(output)
            if self.stop.is_set():
                # The run is ending and may already have recorded this chapter as pending: do
                # not put a file under its final name behind the manifest's back.
                with contextlib.suppress(OSError):
                    output.unlink()
                raise DownloadError(f"chapter {job.index}: cancelled", kind=FailureKind.CANCELLED)
            job.dest.parent.mkdir(parents=True, exist_ok=True)
            output.replace(job.dest)
        except OSError as err:
            with contextlib.suppress(OSError):
                output.unlink()
            raise disk_error_for(err, job.dest) from err
        with contextlib.suppress(OSError):
            remove_tree(job.workdir)
        return size, digest, job.expected

    def _check_length(self, job: ChapterJob, output: Path) -> None:
        if job.expected is None:
            return
        try:
            seconds = audio_seconds(
                self.ffmpeg, output, timeout=max(self.settings.stall_timeout, 10.0)
            )
        except BaseException:
            with contextlib.suppress(OSError):
                output.unlink()
            raise
        problem = job.expected.mismatch(seconds)
        if problem is not None:
            with contextlib.suppress(OSError):
                output.unlink()
            with contextlib.suppress(OSError):
                remove_tree(job.workdir)
            raise DownloadError(
                f"chapter {job.index}: {problem}", kind=FailureKind.INVALID_MEDIA, retry=True
            )


def listed_mismatch(path: Path, size: int, track: Track) -> str | None:
    """How a fetched plain file differs from what the host lists for it (None: it does not).

    The size first (free), then md5 and sha1 in one read of the file, only those listed.
    """
    if track.size is not None and size != track.size:
        return f"size {size} B, the host lists {track.size} B"
    listed = {name: value for name, value in (("md5", track.md5), ("sha1", track.sha1)) if value}
    if not listed:
        return None
    digests = {name: hashlib.new(name, usedforsecurity=False) for name in listed}
    for chunk in _read_files([path]):
        for digest in digests.values():
            digest.update(chunk)
    for name, value in listed.items():
        if digests[name].hexdigest() != value.lower():
            return f"{name} differs from the host's"
    return None


def _read_files(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with os.fdopen(open_nofollow(path), "rb") as handle:
            while chunk := handle.read(_FILE_CHUNK):
                yield chunk
