"""facewatch: a daemon that keeps a face index of photo folders up to date."""

__version__ = "0.1.0"
