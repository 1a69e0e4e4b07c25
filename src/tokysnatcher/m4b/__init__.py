"""One audiobook file per book: joining parts, chapter metadata, MP4 timing, the cover."""
