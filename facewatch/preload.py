"""Imported once by the analyser server process (see worker.analyser_context), before it forks."""
from facewatch.analyse import without_matplotlib

without_matplotlib()

import mediapipe  # noqa: E402  (after the stand-in: the slow half of this import is matplotlib)
import facewatch.analyse  # noqa: E402,F401
