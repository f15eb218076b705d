"""Metadata: what other photo tools read and write beside facewatch, today XMP's face regions
(`xmp`: the MWG regions and names of a sidecar or an embedded packet, read, and a sidecar merged
and written), and how a JPEG's segments are laid out (`jpeg`: where XMP may be, the frame header
the decoder reads). Pure functions of bytes and faces: it imports nothing of facewatch but itself,
so the analysis (reading names as it finds faces) and the results (writing sidecars from the
index) both use it.
"""
