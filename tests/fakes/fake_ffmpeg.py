#!/usr/bin/env python3
"""A misbehaving stand-in for ffmpeg, for watchdog and resolution tests.

The behaviour comes from the environment variable FAKE_FFMPEG_MODE:

* ``version-garbage``: ``-version`` prints something that is not ffmpeg's banner.
* ``version-hang``: ``-version`` never returns.
* ``hang``: writes a little to the output file (the last argument), then waits forever
  without printing any progress.
* ``hang-ignore-term``: like ``hang`` but ignores SIGTERM, so only SIGKILL ends it.
* ``progress-frozen``: keeps printing -progress blocks whose time and size never advance.
* ``progress-forever``: prints advancing -progress blocks forever.

Any other ``-version`` call prints a plausible banner. The process writes its pid to the file
named by FAKE_FFMPEG_PIDFILE, when set, so tests can check it is gone.
"""

import os
import signal
import sys
import time

mode = os.environ.get("FAKE_FFMPEG_MODE", "")
args = sys.argv[1:]

pidfile = os.environ.get("FAKE_FFMPEG_PIDFILE")
if pidfile:
    with open(pidfile, "w") as handle:
        handle.write(str(os.getpid()))

if "-version" in args:
    if mode == "version-garbage":
        print("hello, I am definitely a video converter")
    elif mode == "version-hang":
        time.sleep(3600)
    else:
        print("ffmpeg version 0.0-fake Copyright (c) the fake developers")
    sys.exit(0)

if mode == "hang-ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

ready = os.environ.get("FAKE_FFMPEG_READY")
if ready:  # tell a waiting test that the signal disposition is in place
    with open(ready, "w") as handle:
        handle.write("ready")

if args and not args[-1].startswith("-"):
    output = args[-1].removeprefix("file:")
    with open(output, "wb") as handle:
        handle.write(b"\0" * 1024)


def block(seconds: float, size: int) -> None:
    micros = int(seconds * 1_000_000)
    sys.stdout.write(f"out_time_us={micros}\ntotal_size={size}\nspeed=1.0x\nprogress=continue\n")
    sys.stdout.flush()


if mode == "progress-frozen":
    while True:
        block(1.0, 4096)
        time.sleep(0.1)
elif mode == "progress-forever":
    step = 0
    while True:
        step += 1
        block(step * 0.1, step * 1000)
        time.sleep(0.1)
else:
    time.sleep(3600)
