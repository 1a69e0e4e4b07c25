"""End to end: the real command downloads books from the stand-in site with real ffmpeg."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import (
    MP3_EDGE_SAMPLES,
    assert_same_audio,
    audio_info,
    decoded_md5,
    fast_options,
    metadata,
    run_cli,
    tree,
)
from tokysnatcher.ffmpeg.binary import MP3_TO_AAC_NOTICE
from tokysnatcher.standin import StandinSite
from tokysnatcher.utils.atomic import LOCK_NAME, sha256_file

pytestmark = pytest.mark.integration


def book_folder(root: Path) -> Path:
    manifests = list(root.rglob(".tokysnatcher.json"))
    assert len(manifests) == 1, tree(root)
    return manifests[0].parent


def chapter_files(folder: Path, ext: str) -> list[Path]:
    return sorted(folder.glob(f"*.{ext}"))


def test_m4a_download_is_bit_exact_audio(site: StandinSite, tmp_path: Path) -> None:
    result = run_cli(["the-sample-book", "--format", "m4a", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr + result.stdout
    folder = book_folder(tmp_path)
    assert folder == tmp_path / "Ada Quill" / "The Sample Book"
    files = chapter_files(folder, "m4a")
    spec = site.catalog["the-sample-book"]
    assert len(files) == len(spec.tracks)
    for index, path in enumerate(files):
        assert path.name.startswith(f"{index + 1:02d} - ")
        assert decoded_md5(path) == decoded_md5(site.source_media("the-sample-book", index))
    # Nothing but the chapters, the manifest, the sidecars, the lock file and our (empty or
    # absent) work folder.
    leftovers = [p for p in folder.iterdir() if p.suffix != ".m4a"]
    assert {p.name for p in leftovers} <= {
        ".tokysnatcher.json",
        ".tokysnatcher",
        LOCK_NAME,
        "cover.jpg",
        "metadata.opf",
        "reader.txt",
    }
    assert "4 complete, 0 failed" in result.stdout


def test_mp3_from_aac_is_real_mp3_of_the_right_length(site: StandinSite, tmp_path: Path) -> None:
    result = run_cli(["the-sample-book", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr
    folder = book_folder(tmp_path)
    files = chapter_files(folder, "mp3")
    assert len(files) == 4
    for index, path in enumerate(files):
        codec, duration = audio_info(path)
        _, source_duration = audio_info(site.source_media("the-sample-book", index))
        assert codec == "mp3"
        assert duration == pytest.approx(source_duration, abs=0.15)


def test_tags_are_written(site: StandinSite, tmp_path: Path) -> None:
    result = run_cli(
        ["the-sample-book", "--format", "m4a", "--chapters", "2", *fast_options(site, tmp_path)]
    )
    assert result.returncode == 0, result.stderr
    (path,) = chapter_files(book_folder(tmp_path), "m4a")
    tags = metadata(path)
    spec = site.catalog["the-sample-book"]
    assert tags["title"] == spec.tracks[1].title
    assert tags["album"] == "The Sample Book"
    assert tags["artist"] == "Ada Quill"
    assert tags["album_artist"] == "Ada Quill"
    assert tags["genre"] == "Audiobook"
    assert tags["track"] == "2/4"
    assert tags["composer"] == "Reed Voice"


@pytest.mark.parametrize(
    "slug",
    [
        pytest.param("mp3-stream-book", id="mp3-in-ts-stream-copy"),
        pytest.param("direct-file-book", id="direct-file-tracks"),
    ],
)
def test_mp3_sources_are_stream_copied(site: StandinSite, tmp_path: Path, slug: str) -> None:
    result = run_cli([slug, *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr
    files = chapter_files(book_folder(tmp_path), "mp3")
    assert len(files) == len(site.catalog[slug].tracks)
    for index, path in enumerate(files):
        source = site.source_media(slug, index)
        assert_same_audio(path, source, edge_samples=MP3_EDGE_SAMPLES)


def test_track_without_src_is_skipped_with_a_warning(site: StandinSite, tmp_path: Path) -> None:
    result = run_cli(["nosrc-book", "--format", "m4a", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "track without audio skipped" in result.stderr
    assert len(chapter_files(book_folder(tmp_path), "m4a")) == 2


def test_hostile_names_stay_inside_the_book_folder(site: StandinSite, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    result = run_cli(["hostile-names", "--format", "m4a", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    folder = book_folder(root)
    assert folder.resolve().is_relative_to(root.resolve())
    assert folder.parent.parent == root  # <root>/<Author>/<Title>, nothing deeper or higher
    # Nothing at all was written outside the library root.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"]
    files = chapter_files(folder, "m4a")
    assert len(files) == len(site.catalog["hostile-names"].tracks)
    for path in files:
        name = path.name
        assert len(name.encode("utf-8")) <= 200
        assert not any(ch in name for ch in '<>:"/\\|?*')
        assert all(ord(ch) >= 32 for ch in name)
        assert not name.startswith((".", " "))
        assert not name.endswith((".", " "))
        stem = name.split(" - ", 1)[1].rsplit(".", 1)[0]
        assert stem.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL"}
    manifest = json.loads((folder / ".tokysnatcher.json").read_text("utf-8"))
    for name, entry in manifest["chapters"].items():
        size, digest = sha256_file(folder / name)
        assert (entry["size"], entry["sha256"]) == (size, digest)


@pytest.mark.parametrize("slug", ["mp3-stream-book", "direct-file-book"])
def test_m4a_of_an_mp3_source_is_aac_and_the_run_says_so(
    site: StandinSite, tmp_path: Path, slug: str
) -> None:
    # MP3 inside an .m4a is valid MP4 but Apple's players do not play it reliably: encoded.
    result = run_cli([slug, "--format", "m4a", "-j", "3", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "source audio" in line]
    assert notices == [f"warning: {MP3_TO_AAC_NOTICE}"]  # one line for the run, not per chapter
    files = chapter_files(book_folder(tmp_path), "m4a")
    assert len(files) == len(site.catalog[slug].tracks) > 1
    for index, path in enumerate(files):
        codec, duration = audio_info(path)
        _, source_duration = audio_info(site.source_media(slug, index))
        assert codec == "aac"
        assert duration == pytest.approx(source_duration, abs=0.15)


def test_m4a_of_an_aac_source_says_nothing_of_encoding(site: StandinSite, tmp_path: Path) -> None:
    result = run_cli(["the-sample-book", "--format", "m4a", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "source audio" not in result.stderr
