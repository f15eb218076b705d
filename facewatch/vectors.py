"""Face embeddings as the store keeps them: 128 little-endian float32, 512 bytes."""
import numpy as np

DIMENSIONS = 128


def vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")
