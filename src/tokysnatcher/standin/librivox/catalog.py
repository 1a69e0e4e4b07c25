"""What the LibriVox stand-in serves: books, their sections and the archive.org items of them.

Pure data, no I/O. Ids, file names and answers follow ``shared/librivox-api.md``; the books
cover what a client must get right: unsorted sections, several readers, an unfinished section,
hostile names, hostile JSON, a large book and both kinds of 128 kb/s original.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Original(StrEnum):
    """Which 128 kb/s original an item holds beside each ``_64kb.mp3`` (§2)."""

    KB128 = "128kb"  # <base>_128kb.mp3
    PLAIN = "plain"  # <base>.mp3 (older items)
    NONE = "none"


class Cover(StrEnum):
    """Where the book's cover is found (§3 Cover, in the client's order of trying)."""

    API = "api"  # coverart_jpg, on a LibrivoxCdCoverArt item
    ITEM = "item"  # the item's own <Title>.jpg (coverart_jpg is null)
    TILE = "tile"  # only /services/img/<identifier>


@dataclass(frozen=True, kw_only=True)
class Section:
    """One section: an MP3 per quality, read by ``readers``.

    ``unfinished`` leaves ``listen_url`` empty (a project still in progress: no files).
    ``loop_seconds`` makes long sections cheap to generate (see ``standin.catalog.TrackSpec``).
    """

    number: int
    title: str
    seconds: float = 3.0
    readers: tuple[str, ...] = ("Reed Voice",)
    unfinished: bool = False
    loop_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class LvBook:
    """One LibriVox book and the archive.org item of its files.

    ``authors`` are ``(first name, last name)`` pairs. ``overrides`` replace keys of the book's
    JSON as served (hostile answers: numbers, lists, garbage where strings belong).
    """

    id: int
    slug: str  # the book page: /<slug>/
    title: str
    authors: tuple[tuple[str, str], ...]
    sections: tuple[Section, ...]
    identifier: str
    description: str = "<p>A book read by volunteers.</p>"
    language: str = "English"
    copyright_year: str = "1900"
    genres: tuple[str, ...] = ("Literary Fiction",)
    original: Original = Original.KB128
    cover: Cover = Cover.API
    overrides: tuple[tuple[str, Any], ...] = field(default=())

    def file_base(self, section: Section) -> str:
        """The name of a section's files without quality suffix and extension."""
        return f"{self.identifier.removesuffix('_librivox')}_{section.number:02d}"

    def low_name(self, section: Section) -> str:
        """The 64 kb/s file: what ``listen_url`` points to."""
        return f"{self.file_base(section)}_64kb.mp3"

    def original_name(self, section: Section) -> str | None:
        """The 128 kb/s original, if the item holds one."""
        if self.original is Original.KB128:
            return f"{self.file_base(section)}_128kb.mp3"
        if self.original is Original.PLAIN:
            return f"{self.file_base(section)}.mp3"
        return None

    @property
    def cover_name(self) -> str:
        """The cover's file name (on the cover-art item, or in the book's own item)."""
        safe = "".join(ch for ch in self.title if ch.isalnum()) or "Cover"
        return f"{safe[:40]}_1012.jpg" if self.cover is Cover.API else f"{safe[:40]}.jpg"

    def served_order(self) -> list[Section]:
        """Sections as the API serves them: in no particular order (§1 Matching)."""
        return sorted(
            self.sections,
            key=lambda s: hashlib.blake2b(f"{self.id}|{s.number}".encode()).hexdigest(),
        )


#: The item that holds LibriVox's cover art (§3 Cover: ``LibrivoxCdCoverArtNN``).
COVER_ITEM = "LibrivoxCdCoverArt12"
SAMPLE_ID = 101
MULTI_READER_ID = 102
UNFINISHED_ID = 103
HOSTILE_NAMES_ID = 104
LARGE_ID = 105
HOSTILE_JSON_IDS = (190, 191, 192)


def default_catalog() -> dict[int, LvBook]:
    """The books every LibriVox stand-in serves (id -> book)."""
    sample = LvBook(
        id=SAMPLE_ID,
        slug="the-sample-sections-by-ada-quill",
        title="The Sample Sections",
        authors=(("Ada", "Quill"),),
        description=(
            "<p><i>The Sample Sections</i> is a short book &amp; a test.</p>"
            "<p>Second paragraph,<br>with a line break.</p><script>alert(1)</script>"
        ),
        copyright_year="1887",
        genres=("Literary Fiction", "Short Stories"),
        identifier="sample_sections_2101_librivox",
        sections=(
            Section(number=1, title="Prologue", seconds=3.0),
            Section(number=2, title="The Long Road", seconds=5.0),
            Section(number=3, title="A Quiet Harbour", seconds=4.0),
            Section(number=4, title="Epilogue", seconds=2.0),
        ),
    )
    multi = LvBook(
        id=MULTI_READER_ID,
        slug="many-voices-by-bea-chorus-and-cal-echo",
        title="Many Voices",
        authors=(("Bea", "Chorus"), ("Cal", "Echo")),
        language="English",
        copyright_year="0",
        genres=("Poetry",),
        identifier="many_voices_1905_librivox",
        original=Original.PLAIN,
        cover=Cover.ITEM,
        sections=(
            Section(number=1, title="First Voice", seconds=2.0, readers=("Ann Reader",)),
            Section(number=2, title="Duet", seconds=3.0, readers=("Ann Reader", "Ben Speaker")),
            Section(number=3, title="No Credit", seconds=2.0, readers=()),
            Section(number=4, title="Last Voice", seconds=2.5, readers=("Cy Teller",)),
        ),
    )
    unfinished = LvBook(
        id=UNFINISHED_ID,
        slug="work-in-progress-by-dan-draft",
        title="Work in Progress",
        authors=(("Dan", "Draft"),),
        identifier="work_in_progress_2311_librivox",
        original=Original.NONE,
        cover=Cover.TILE,
        sections=(
            Section(number=1, title="Done One", seconds=2.0),
            Section(number=2, title="Still Being Read", seconds=2.0, unfinished=True),
            Section(number=3, title="Done Two", seconds=2.0),
        ),
    )
    hostile = LvBook(
        id=HOSTILE_NAMES_ID,
        slug="hostile-names",
        title="../../etc/passwd",
        authors=(("CON", ".."),),
        description="<p>\u202eevil\u202c <b>bold</b></p>",
        identifier="hostile_names_librivox",
        sections=(
            Section(number=1, title="../../x", seconds=1.5, readers=("<Nobody>",)),
            Section(number=2, title="NUL", seconds=1.5),
            Section(number=3, title="A very long section title " * 12 + "end", seconds=1.5),
            Section(number=4, title="bidi \u202eelif.exe\u202c and \u2067isolate", seconds=1.5),
        ),
    )
    large = LvBook(
        id=LARGE_ID,
        slug="a-long-listen-by-eve-endless",
        title="A Long Listen",
        authors=(("Eve", "Endless"),),
        identifier="long_listen_1999_librivox",
        sections=(
            Section(number=1, title="Part One", seconds=240.0, loop_seconds=8.0),
            Section(number=2, title="Part Two", seconds=240.0, loop_seconds=8.0),
        ),
    )
    hostile_json = [
        LvBook(
            id=book_id,
            slug=f"hostile-json-{n}",
            title=f"Hostile JSON {n}",
            authors=(("Mal", "Formed"),),
            identifier=f"hostile_json_{n}_librivox",
            sections=(Section(number=1, title="Only", seconds=1.0),),
            overrides=overrides,
        )
        for n, (book_id, overrides) in enumerate(
            zip(
                HOSTILE_JSON_IDS,
                (
                    (("sections", "garbage"),),
                    (("sections", [{"section_number": {"$gt": 1}, "listen_url": 7}]),),
                    (("authors", [None, 3]), ("title", ["not", "text"])),
                ),
                strict=True,
            ),
            start=1,
        )
    ]
    books = [sample, multi, unfinished, hostile, large, *hostile_json]
    return {book.id: book for book in books}
