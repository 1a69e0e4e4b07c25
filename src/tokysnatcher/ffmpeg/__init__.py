"""The ffmpeg binary: resolving it, building commands, running and probing."""
