"""The ffmpeg side of an m4b: the join command, its ffconcat and ffmetadata inputs, reading back.

:func:`m4b_join_command` joins m4a parts without re-encoding; :func:`concat_list_text` and
:func:`ffmetadata_text` write the files it reads; :func:`read_metadata` reads a file's tags and
chapters back through ffmpeg.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from tokysnatcher.errors import FailureKind, FfmpegError
from tokysnatcher.ffmpeg.binary import (
    CONTROL_CHARS,
    PROTOCOL_WHITELIST,
    FfmpegInfo,
    file_url,
    global_options,
    run_short,
    summarize_stderr,
)
from tokysnatcher.ffmpeg.image import ImageFormat

M4B_BRAND = "M4B "  # the major brand players use to treat an MP4 audio file as an audiobook
_IMAGE_DEMUXER: dict[ImageFormat, str] = {"jpeg": "jpeg_pipe", "png": "png_pipe"}
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
    args = [ffmpeg.path, *global_options(stdin=False)]
    args += ["-f", "concat", "-safe", "0", *whitelist, "-i", file_url(concat_list)]
    args += ["-f", "ffmetadata", *whitelist, "-i", file_url(metadata)]
    if cover is not None:
        args += ["-f", _IMAGE_DEMUXER[cover_format], *whitelist, "-i", file_url(cover)]
    args += ["-map", "0:a:0"]
    if cover is not None:
        args += ["-map", "2:v:0", "-c:v", "copy", "-disposition:v:0", "attached_pic"]
    stamp = f"N*{frame_samples}"
    args += ["-map_metadata", "1", "-map_chapters", "1", "-c:a", "copy"]
    args += ["-bsf:a", f"setts=pts={stamp}:dts={stamp}:duration={frame_samples}"]
    args += ["-movflags", "+faststart", "-brand", M4B_BRAND, "-f", "ipod", file_url(output)]
    return args


def concat_list_text(parts: Iterable[Path]) -> str:
    """An ffconcat list of ``parts`` (absolute ``file:`` URLs, quoted for the list syntax).

    No per-file options (ffmpeg 4.4, still common, has none): the join re-stamps every packet
    anyway, so the parts' own timestamps and edit lists do not shape the timeline.
    """
    lines = ["ffconcat version 1.0"]
    for part in parts:
        url = file_url(part)
        if any(ch in url for ch in "\r\n\x00"):
            raise ValueError(f"{part} has a line break in its path; ffmpeg cannot list it")
        quoted = url.replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    return "\n".join(lines) + "\n"


def _ffmeta_escape(value: str) -> str:
    return _FFMETA_SPECIAL.sub(r"\\\1", CONTROL_CHARS.sub(" ", value).strip())


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
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", file_url(path), "-f", "ffmetadata"]
    returncode, out, err = run_short(
        [*args, "-"], timeout=timeout, doing=f"reading the tags of {path.name}"
    )
    if returncode != 0:
        lines = err.decode("utf-8", errors="replace").splitlines()
        raise FfmpegError(
            f"cannot read {path.name}: {summarize_stderr(lines)}", kind=FailureKind.INVALID_MEDIA
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
