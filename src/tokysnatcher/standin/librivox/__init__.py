"""The LibriVox stand-in: librivox.org's API and pages, archive.org's metadata and file hosting
(``shared/librivox-api.md`` §6), with generated MP3s and the tokybook stand-in's faults."""
