"""HTTP transfers, their limits, failure classification and HLS playlists."""
