"""Imported once by the analyser server process (facewatch/pool.py), before it forks analysers."""
from facewatch.analyse import without_matplotlib

without_matplotlib()  # first: matplotlib is the slow half of `import mediapipe`

import mediapipe  # noqa: E402,F401
