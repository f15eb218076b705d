"""Analysis: the bytes of one claimed file -> a Result with its faces, in analyser processes.

Owns decoding (`decode`: reduced JPEG decodes, EXIF orientation, clear errors), the detector
(`detect`, `blazeface`: MediaPipe's graph with hints; `tiles`, `faces`: small faces), the face
embedder (`embed`), and the processes they run in (`pool`, `preload`, `analysers`, `analyse`).
May import `store` (its dataclasses) and `config`; nothing of the service, people or results.
"""
