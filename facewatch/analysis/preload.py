"""Imported once by the analyser server process (facewatch/pool.py), before it forks analysers."""
import atexit
import os
import sys

from facewatch.analysis.analyse import without_matplotlib

without_matplotlib()  # first: matplotlib is the slow half of `import mediapipe`
# MediaPipe's audio tasks import sounddevice, which looks for PortAudio by running ldconfig, gcc
# and ld (40 ms here); MediaPipe takes its absence as "no audio", which analysers never need.
sys.modules.setdefault("sounddevice", None)

import cv2  # noqa: E402
import mediapipe  # noqa: E402,F401

cv2.setNumThreads(1)  # one analyser per core already: OpenCV's own threads would only contend

# The server ends when the daemon or the scan does. Tearing down MediaPipe, OpenCV and numpy module
# by module takes 50 ms and holds the caller's stderr open meanwhile: skip it (nothing is buffered
# here; forked analysers leave with os._exit and never run this).
atexit.register(os._exit, 0)
