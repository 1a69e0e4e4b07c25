"""The files beside the audio that players read: ``cover.jpg``, ``desc.txt``, ``reader.txt`` and
``metadata.opf`` (Audiobookshelf's conventions).

Only files with content are written (a book without a description gets no ``desc.txt``). Each is
written atomically, and only when what is on disk differs, then recorded in the manifest with its
size and SHA-256 so that ``--verify-folder`` checks it like a chapter and the next run rewrites
one that went missing or changed.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path

from tokysnatcher.library.manifest import ManifestManager
from tokysnatcher.library.manifest_schema import BookFile, ChapterCheck
from tokysnatcher.library.scan import check_file
from tokysnatcher.sources.source import Book, Track
from tokysnatcher.utils.atomic import atomic_write_bytes, disk_error_for

COVER_NAME = "cover.jpg"
DESCRIPTION_NAME = "desc.txt"
READER_NAME = "reader.txt"
OPF_NAME = "metadata.opf"
_OPF_NS = "http://www.idpf.org/2007/opf"
_DC_NS = "http://purl.org/dc/elements/1.1/"
# Characters XML 1.0 cannot hold (even escaped); line breaks and tabs stay.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def narrators(book: Book, tracks: Iterable[Track]) -> list[str]:
    """The book's narrators: the book's own, else every chapter's reader, in order, once each."""
    if book.narrator and book.narrator.strip():
        return [book.narrator.strip()]
    found: list[str] = []
    for track in tracks:
        name = (track.narrator or "").strip()
        if name and name not in found:
            found.append(name)
    return found


def sidecar_files(book: Book, tracks: Iterable[Track], cover: bytes | None) -> dict[str, bytes]:
    """What to write beside the audio, by name: only the files that have content."""
    files: dict[str, bytes] = {}
    if cover:
        files[COVER_NAME] = cover
    description = _plain(book.description or "")
    if description:
        files[DESCRIPTION_NAME] = (description + "\n").encode("utf-8")
    readers = narrators(book, tracks)
    if readers:
        files[READER_NAME] = (_plain(", ".join(readers)) + "\n").encode("utf-8")
    files[OPF_NAME] = opf_document(book, readers)
    return files


def _plain(text: str) -> str:
    lines = [_CONTROL.sub(" ", line).rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip()


def opf_document(book: Book, readers: list[str]) -> bytes:
    """``metadata.opf``: OPF 2.0 with Dublin Core, as Audiobookshelf and calibre read it.

    Written with ElementTree, so every value is escaped; characters XML cannot hold are dropped.
    """

    def clean(value: str) -> str:
        return _NOT_XML.sub("", value).strip()

    package = ET.Element(
        "package", {"xmlns": _OPF_NS, "unique-identifier": "BookId", "version": "2.0"}
    )
    metadata = ET.SubElement(package, "metadata", {"xmlns:dc": _DC_NS, "xmlns:opf": _OPF_NS})

    def add(tag: str, text: str | None, **attributes: str) -> None:
        if text and clean(text):
            ET.SubElement(metadata, tag, attributes).text = clean(text)

    add("dc:identifier", book.slug, id="BookId", **{"opf:scheme": book.source})
    add("dc:title", book.title)
    add("dc:creator", book.author, **{"opf:role": "aut"})
    for reader in readers:
        add("dc:creator", reader, **{"opf:role": "nrt"})
    add("dc:description", book.description)
    add("dc:language", book.language)
    for genre in book.genres:
        add("dc:subject", genre)
    add("dc:date", str(book.year) if book.year else None)
    add("dc:source", book.source_url)
    for name, value in (
        ("calibre:series", book.series),
        ("calibre:series_index", book.series_index),
    ):
        if value and clean(value):
            ET.SubElement(metadata, "meta", {"name": name, "content": clean(value)})
    ET.indent(package)
    document: bytes = ET.tostring(package, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_sidecars(folder: Path, files: Mapping[str, bytes], manifest: ManifestManager) -> None:
    """Put ``files`` beside the audio (atomically, only those that differ) and record them.

    Raises :class:`DiskError` when one cannot be written.
    """
    wanted = {
        name: BookFile(name, len(data), hashlib.sha256(data).hexdigest())
        for name, data in files.items()
    }
    changed = [
        name
        for name, want in wanted.items()
        if check_file(folder / name, want.size, want.sha256) is not ChapterCheck.OK
    ]
    # The manifest stops vouching for a file before it is replaced: a kill in between leaves a
    # sidecar the manifest does not describe, never one it describes wrongly.
    kept = {name: f for name, f in manifest.sidecars.items() if name not in changed}
    manifest.set_sidecars(kept)
    for name in changed:
        try:
            atomic_write_bytes(folder / name, files[name])
        except OSError as err:
            raise disk_error_for(err, folder / name) from err
    manifest.set_sidecars(wanted)
