"""Face regions in XMP, as digiKam, Lightroom, darktable, Immich and PhotoPrism read and write them.

Out: a sidecar beside the photo (`photo.jpg.xmp`, darktable's and digiKam's convention, or
`photo.xmp`, Lightroom's) holding one Metadata Working Group region per face (`mwg-rs:Regions`,
type Face, the person's name when named; the area as the normalised centre x, y, width and height
of the picture as shown, with `mwg-rs:AppliedToDimensions`), and the names again as digiKam's
`TagsList` (`People/NAME`) and IPTC's `PersonInImage`. An existing sidecar is merged: its other
properties and other tools' regions stay as they are; facewatch's regions carry `facewatch:Face`
and the names facewatch added are listed in `facewatch:Names`, so both are replaced when people
change, and nothing else is.

In: the named face regions of a photo's XMP (packet scanning finds it embedded in any format; a
sidecar is read whole): MWG regions and Microsoft's `MP:RegionInfo`, in the coordinates of the
picture as shown. MWG areas relative to the picture as stored (their AppliedToDimensions are
the stored picture's, turned a quarter from the shown one) are turned as the EXIF orientation
says.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Optional

from facewatch.metadata.jpeg import header_end

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS = {
    "x": "adobe:ns:meta/",
    "rdf": RDF,
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/",
    "stDim": "http://ns.adobe.com/xap/1.0/sType/Dimensions#",
    "stArea": "http://ns.adobe.com/xmp/sType/Area#",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "MP": "http://ns.microsoft.com/photo/1.2/",
    "MPRI": "http://ns.microsoft.com/photo/1.2/t/RegionInfo#",
    "MPReg": "http://ns.microsoft.com/photo/1.2/t/Region#",
    "facewatch": "https://facewatch.invalid/ns/xmp/1.0/",  # a name of its own, never fetched
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)
SIDECARS = ("darktable", "lightroom")


def q(name: str) -> str:
    """'mwg-rs:Name' -> ElementTree's '{uri}Name'."""
    prefix, _, local = name.partition(":")
    return f"{{{NS[prefix]}}}{local}"


class XmpError(Exception):
    """A sidecar that is not XMP facewatch can merge into (left as it is); the message says why."""


@dataclass(frozen=True)
class Region:
    name: Optional[str]
    box: tuple  # x, y, w, h in pixels of the picture as shown


def sidecar_path(photo: str, convention: str = "darktable") -> str:
    """`photo.jpg.xmp` (darktable, digiKam) or `photo.xmp` (Lightroom)."""
    return photo + ".xmp" if convention == "darktable" else os.path.splitext(photo)[0] + ".xmp"


# reading ------------------------------------------------------------------------------------------
def packet_in(data: bytes) -> Optional[bytes]:
    """The XMP packet embedded in a file of any format (XMP's own packet scanning), or None. In a
    JPEG only its segments before the image data are scanned: XMP lives there (APP1), and a 12 MP
    photo's compressed pixels are the other 99% of the file."""
    if data[:2] == b"\xff\xd8":
        data = data[:header_end(data)]
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start)
    return data[start:end + len(b"</x:xmpmeta>")] if end > 0 else None


def _parse(packet: bytes) -> Optional[ET.Element]:
    start = packet.find(b"<x:xmpmeta")
    if start < 0:
        start = packet.find(b"<rdf:RDF")
    try:
        return ET.fromstring(packet[max(start, 0):].split(b"<?xpacket end")[0])
    except ET.ParseError:
        return None


def _prop(element: ET.Element, name: str) -> Optional[str]:
    """A simple property written as an attribute or as a child element's text."""
    value = element.get(q(name))
    if value is None:
        child = element.find(q(name))
        value = child.text if child is not None else None
    return value.strip() if isinstance(value, str) else value


def _items(container: Optional[ET.Element]) -> list[ET.Element]:
    """The resources of an rdf:Bag/Seq/Alt inside `container` (each rdf:li, or its rdf:Description)."""
    if container is None:
        return []
    found = []
    for li in container.iter(q("rdf:li")):
        inner = li.find(q("rdf:Description"))
        found.append(inner if inner is not None else li)
    return found


def named_regions(packet: bytes, width: int, height: int, orientation: int = 1) -> list[Region]:
    """The named face regions of an XMP packet, in pixels of the picture as shown (width x height)."""
    root = _parse(packet)
    if root is None:
        return []
    found = []
    for description in root.iter(q("rdf:Description")):
        found += _mwg(description, width, height, orientation) + _microsoft(description, width, height)
    return found


def _mwg(description: ET.Element, width: int, height: int, orientation: int) -> list[Region]:
    regions = description.find(q("mwg-rs:Regions"))
    if regions is None:
        return []
    applied = regions.find(q("mwg-rs:AppliedToDimensions"))
    dims = (_number(applied, "stDim:w"), _number(applied, "stDim:h")) if applied is not None else (None, None)
    stored = orientation in (5, 6, 7, 8) and dims == (height, width) and width != height
    found = []
    for region in _items(regions.find(q("mwg-rs:RegionList"))):
        name, kind, area = _prop(region, "mwg-rs:Name"), _prop(region, "mwg-rs:Type"), region.find(q("mwg-rs:Area"))
        if not name or (kind and kind != "Face") or area is None:
            continue
        values = [_number(area, f"stArea:{k}") for k in "xywh"]
        if None in values:
            continue
        cx, cy, w, h = values
        if stored:  # relative to the picture as stored: turn it as the EXIF orientation shows it
            cx, cy, w, h = _turned(cx, cy, w, h, orientation)
        found.append(Region(name, _pixels(cx - w / 2, cy - h / 2, w, h, width, height)))
    return found


def _microsoft(description: ET.Element, width: int, height: int) -> list[Region]:
    info = description.find(q("MP:RegionInfo"))
    regions = info.find(q("MPRI:Regions")) if info is not None else None
    found = []
    for region in _items(regions):
        name, rectangle = _prop(region, "MPReg:PersonDisplayName"), _prop(region, "MPReg:Rectangle")
        try:
            x, y, w, h = (float(v) for v in (rectangle or "").split(","))
        except ValueError:
            continue
        if name:
            found.append(Region(name, _pixels(x, y, w, h, width, height)))
    return found


def _number(element: Optional[ET.Element], name: str) -> Optional[float]:
    try:
        return float(_prop(element, name)) if element is not None else None
    except (TypeError, ValueError):
        return None


def _turned(cx: float, cy: float, w: float, h: float, orientation: int) -> tuple:
    """A normalised area of the stored picture, in the picture as shown (EXIF orientations 5-8)."""
    if orientation == 6:  # shown turned a quarter to the right
        return 1 - cy, cx, h, w
    if orientation == 8:
        return cy, 1 - cx, h, w
    if orientation == 5:
        return cy, cx, h, w
    return 1 - cy, 1 - cx, h, w  # 7


def _pixels(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple:
    return round(x * width), round(y * height), round(w * width), round(h * height)


# writing -------------------------------------------------------------------------------------------
TEMPLATE = (f'<x:xmpmeta xmlns:x="{NS["x"]}" x:xmptk="facewatch"><rdf:RDF xmlns:rdf="{RDF}">'
            '<rdf:Description rdf:about=""/></rdf:RDF></x:xmpmeta>')


def merged_sidecar(existing: Optional[bytes], faces: list[tuple], width: int, height: int) -> bytes:
    """The sidecar `existing` (or a new one) with facewatch's regions and names replaced by those of
    `faces`: (index, (x, y, w, h) in pixels as shown, name or None). XmpError if `existing` is
    not XMP facewatch can merge into (it is then left as it is)."""
    if existing and existing.strip():
        _register_prefixes(existing)
        root = _parse(existing)
        if root is None or (root.tag != q("x:xmpmeta") and root.tag != q("rdf:RDF")):
            raise XmpError("the sidecar is not an XMP packet facewatch can read; it was left as it is")
        if root.tag == q("rdf:RDF"):
            wrapper = ET.Element(q("x:xmpmeta"))
            wrapper.append(root)
            root = wrapper
    else:
        root = ET.fromstring(TEMPLATE)
    rdf = root.find(q("rdf:RDF"))
    if rdf is None:
        raise XmpError("the sidecar has no rdf:RDF; it was left as it is")
    description = next((d for d in rdf.findall(q("rdf:Description")) if d.find(q("mwg-rs:Regions")) is not None),
                       rdf.find(q("rdf:Description")))
    if description is None:
        description = ET.SubElement(rdf, q("rdf:Description"), {q("rdf:about"): ""})
    _replace_regions(description, faces, width, height)
    _replace_names(description, [name for _, _, name in faces if name])
    body = ET.tostring(root, encoding="unicode")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body +
            '\n<?xpacket end="w"?>\n').encode("utf-8")


def _register_prefixes(existing: bytes) -> None:
    """Keep the prefixes another tool chose for its namespaces (ElementTree would say ns0, ns1)."""
    import io
    try:
        for _, (prefix, uri) in ET.iterparse(io.BytesIO(existing[existing.find(b"<"):]), events=("start-ns",)):
            if prefix and uri not in NS.values() and not prefix.startswith("ns"):
                ET.register_namespace(prefix, uri)
    except ET.ParseError:
        pass


def _replace_regions(description: ET.Element, faces: list, width: int, height: int) -> None:
    regions = description.find(q("mwg-rs:Regions"))
    if regions is None:
        if not faces:
            return
        regions = ET.SubElement(description, q("mwg-rs:Regions"), {q("rdf:parseType"): "Resource"})
    applied = regions.find(q("mwg-rs:AppliedToDimensions"))
    if applied is None:  # another tool's dimensions stay: the areas are fractions of the picture either way
        applied = ET.Element(q("mwg-rs:AppliedToDimensions"),
                             {q("stDim:w"): str(width), q("stDim:h"): str(height), q("stDim:unit"): "pixel"})
        regions.insert(0, applied)
    listing = regions.find(q("mwg-rs:RegionList"))
    if listing is None:
        listing = ET.SubElement(regions, q("mwg-rs:RegionList"))
    bag = listing.find(q("rdf:Bag"))
    if bag is None:
        bag = listing.find(q("rdf:Seq"))
    if bag is None:
        bag = ET.SubElement(listing, q("rdf:Bag"))
    for li in list(bag.findall(q("rdf:li"))):
        inner = li.find(q("rdf:Description"))
        if _prop(inner if inner is not None else li, "facewatch:Face") is not None:
            bag.remove(li)
    for index, (x, y, w, h), name in faces:
        li = ET.SubElement(bag, q("rdf:li"))
        attributes = {q("mwg-rs:Type"): "Face", q("facewatch:Face"): str(index)}
        if name:
            attributes[q("mwg-rs:Name")] = name
        region = ET.SubElement(li, q("rdf:Description"), attributes)
        ET.SubElement(region, q("mwg-rs:Area"), {
            q("stArea:x"): f"{(x + w / 2) / width:.6f}", q("stArea:y"): f"{(y + h / 2) / height:.6f}",
            q("stArea:w"): f"{w / width:.6f}", q("stArea:h"): f"{h / height:.6f}", q("stArea:unit"): "normalized"})
    if not len(bag):
        description.remove(regions)


def _replace_names(description: ET.Element, names: list[str]) -> None:
    """digiKam's People/NAME tags and IPTC's PersonInImage: facewatch's names as they are now, the
    names facewatch added before taken away, every other entry kept."""
    names = list(dict.fromkeys(names))
    before = set(_texts(description.find(q("facewatch:Names"))))
    for prop, kind, value in (("digiKam:TagsList", "rdf:Seq", lambda n: f"People/{n}"),
                              ("Iptc4xmpExt:PersonInImage", "rdf:Bag", lambda n: n)):
        element = description.find(q(prop))
        kept = [t for t in _texts(element) if t not in {value(n) for n in before}]
        wanted = kept + [value(n) for n in names if value(n) not in kept]
        if element is not None:
            description.remove(element)
        if wanted:
            _list(description, prop, kind, wanted)
    old = description.find(q("facewatch:Names"))
    if old is not None:
        description.remove(old)
    if names:
        _list(description, "facewatch:Names", "rdf:Bag", names)


def _texts(element: Optional[ET.Element]) -> list[str]:
    return [li.text.strip() for li in element.iter(q("rdf:li")) if li.text] if element is not None else []


def _list(parent: ET.Element, prop: str, kind: str, values: list[str]) -> None:
    container = ET.SubElement(ET.SubElement(parent, q(prop)), q(kind))
    for value in values:
        ET.SubElement(container, q("rdf:li")).text = value
