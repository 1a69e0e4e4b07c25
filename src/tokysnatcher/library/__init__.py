"""Book folders on disk: the manifest, scanning and verifying."""
