"""Face embeddings as the store keeps them: DIMENSIONS little-endian float32 (512 bytes)."""
import numpy as np

from facewatch.analysis.embed import DIMENSIONS  # noqa: F401  (the people stage's callers read it here)


def vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")
