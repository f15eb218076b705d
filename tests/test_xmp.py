"""XMP: face regions and names out to sidecars other tools read (checked with Debian's exiv2
command and with Exiv2 through pyexiv2), merged into their sidecars without losing a tag; names
other tools gave read in at analysis."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import export, facewatch, make_variants, save_jpeg, status, wait_until, write_config
from facewatch.metadata.xmp import merged_sidecar, named_regions, packet_in, sidecar_path

PEOPLE_ON = {"enabled": True}
# a sidecar as digiKam writes one: its own region (another person), a place tag, a rating, a title
DIGIKAM = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
   xmp:Rating="4">
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">A day out</rdf:li></rdf:Alt></dc:title>
   <digiKam:TagsList><rdf:Seq><rdf:li>Places/Paris</rdf:li><rdf:li>People/Zed</rdf:li></rdf:Seq></digiKam:TagsList>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="1000" stDim:h="800" stDim:unit="pixel"/>
    <mwg-rs:RegionList>
     <rdf:Bag>
      <rdf:li>
       <rdf:Description mwg-rs:Name="Zed" mwg-rs:Type="Face">
        <mwg-rs:Area stArea:x="0.8" stArea:y="0.5" stArea:w="0.1" stArea:h="0.12" stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
     </rdf:Bag>
    </mwg-rs:RegionList>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def exiv2_keys(path: Path) -> dict:
    """What Exiv2 reads from a sidecar: Debian's exiv2 command when installed, else pyexiv2."""
    if shutil.which("exiv2"):
        out = subprocess.run(["exiv2", "-px", str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        keys = {}
        for line in out.stdout.splitlines():
            parts = line.split(None, 3)
            keys[parts[0]] = parts[3] if len(parts) == 4 else ""
        return keys
    import pyexiv2
    image = pyexiv2.Image(str(path))
    try:
        return {k: (", ".join(v) if isinstance(v, list) else v) for k, v in image.read_xmp().items()}
    finally:
        image.close()


def pyexiv2_keys(path: Path) -> dict:
    import pyexiv2
    image = pyexiv2.Image(str(path))
    try:
        return image.read_xmp()
    finally:
        image.close()


def test_a_sidecar_is_merged_into_another_tools_and_read_back_by_exiv2(tmp_path):
    path = tmp_path / "a.jpg.xmp"
    path.write_bytes(DIGIKAM)
    faces = [(0, (100, 80, 200, 240), "Ada Lovelace"), (1, (450, 100, 120, 150), None)]
    path.write_bytes(merged_sidecar(path.read_bytes(), faces, 1000, 800))
    for keys in (exiv2_keys(path), pyexiv2_keys(path)):
        flat = json.dumps(keys)
        assert "Ada Lovelace" in flat and "Zed" in flat and "Places/Paris" in flat and "People/Ada Lovelace" in flat
        assert "A day out" in flat
    keys = pyexiv2_keys(path)
    assert keys["Xmp.xmp.Rating"] == "4"
    assert keys["Xmp.iptcExt.PersonInImage"] == ["Ada Lovelace"]
    names = [v for k, v in keys.items() if k.endswith("/mwg-rs:Name")]
    assert sorted(names) == ["Ada Lovelace", "Zed"]  # theirs kept, ours added; the unnamed face has no name
    regions = {r.name: r.box for r in named_regions(path.read_bytes(), 1000, 800)}
    assert regions == {"Zed": (750, 352, 100, 96), "Ada Lovelace": (100, 80, 200, 240)}
    # a rename in facewatch: our region and name follow, theirs stay; a face gone: its region goes
    path.write_bytes(merged_sidecar(path.read_bytes(), [(0, (100, 80, 200, 240), "Ada King")], 1000, 800))
    keys = pyexiv2_keys(path)
    assert keys["Xmp.digiKam.TagsList"] == ["Places/Paris", "People/Zed", "People/Ada King"]
    assert keys["Xmp.iptcExt.PersonInImage"] == ["Ada King"]
    assert sorted(r.name for r in named_regions(path.read_bytes(), 1000, 800)) == ["Ada King", "Zed"]
    assert keys["Xmp.xmp.Rating"] == "4" and "A day out" in json.dumps(keys)
    path.write_bytes(merged_sidecar(path.read_bytes(), [], 1000, 800))
    assert [r.name for r in named_regions(path.read_bytes(), 1000, 800)] == ["Zed"]
    assert pyexiv2_keys(path)["Xmp.digiKam.TagsList"] == ["Places/Paris", "People/Zed"]


def test_regions_are_read_in_every_form_other_tools_write():
    """MWG regions as attributes or as elements, Microsoft's MP:RegionInfo, and MWG areas relative
    to the picture as stored (its dimensions turned a quarter from the shown one)."""
    elements = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
      <rdf:Description xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
          xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#" xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
          xmlns:MP="http://ns.microsoft.com/photo/1.2/" xmlns:MPRI="http://ns.microsoft.com/photo/1.2/t/RegionInfo#"
          xmlns:MPReg="http://ns.microsoft.com/photo/1.2/t/Region#">
        <mwg-rs:Regions rdf:parseType="Resource">
          <mwg-rs:AppliedToDimensions rdf:parseType="Resource"><stDim:w>600</stDim:w><stDim:h>400</stDim:h></mwg-rs:AppliedToDimensions>
          <mwg-rs:RegionList><rdf:Bag><rdf:li rdf:parseType="Resource">
            <mwg-rs:Name>Bea</mwg-rs:Name><mwg-rs:Type>Face</mwg-rs:Type>
            <mwg-rs:Area rdf:parseType="Resource"><stArea:x>0.25</stArea:x><stArea:y>0.5</stArea:y>
              <stArea:w>0.1</stArea:w><stArea:h>0.2</stArea:h></mwg-rs:Area>
          </rdf:li><rdf:li rdf:parseType="Resource"><mwg-rs:Name>A pet</mwg-rs:Name><mwg-rs:Type>Pet</mwg-rs:Type>
            <mwg-rs:Area rdf:parseType="Resource"><stArea:x>0.5</stArea:x><stArea:y>0.5</stArea:y>
              <stArea:w>0.1</stArea:w><stArea:h>0.1</stArea:h></mwg-rs:Area></rdf:li></rdf:Bag></mwg-rs:RegionList>
        </mwg-rs:Regions>
        <MP:RegionInfo rdf:parseType="Resource"><MPRI:Regions><rdf:Bag><rdf:li rdf:parseType="Resource">
          <MPReg:Rectangle>0.6, 0.1, 0.2, 0.3</MPReg:Rectangle><MPReg:PersonDisplayName>Cy</MPReg:PersonDisplayName>
        </rdf:li></rdf:Bag></MPRI:Regions></MP:RegionInfo>
      </rdf:Description></rdf:RDF></x:xmpmeta>"""
    regions = {r.name: r.box for r in named_regions(elements, 600, 400)}
    assert regions == {"Bea": (120, 160, 60, 80), "Cy": (360, 40, 120, 120)}  # the pet is no face
    # the same MWG region relative to the stored picture (600x400) of a photo shown turned (orientation 6)
    turned = {r.name: r.box for r in named_regions(elements, 400, 600, orientation=6)}
    assert turned["Bea"] == (160, 120, 80, 60)  # centre (0.25, 0.5) stored -> (0.5, 0.25) shown, w and h swapped
    assert packet_in(b"\xff\xd8junk" + elements + b"more") == elements


def tagged_jpeg(path: Path, rgb: np.ndarray, regions: list) -> Path:
    """A JPEG whose XMP (embedded by Exiv2, another tool than facewatch) names its faces' regions:
    (name, normalised centre x, y, width, height)."""
    import pyexiv2
    save_jpeg(path, rgb)
    items = "".join(
        f'<rdf:li><rdf:Description mwg-rs:Name="{name}" mwg-rs:Type="Face"><mwg-rs:Area stArea:x="{x}" stArea:y="{y}" '
        f'stArea:w="{w}" stArea:h="{h}" stArea:unit="normalized"/></rdf:Description></rdf:li>'
        for name, x, y, w, h in regions)
    packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/" '
              'xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#" xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#">'
              f'<mwg-rs:Regions rdf:parseType="Resource"><mwg-rs:AppliedToDimensions stDim:w="{rgb.shape[1]}" '
              f'stDim:h="{rgb.shape[0]}" stDim:unit="pixel"/><mwg-rs:RegionList><rdf:Bag>{items}</rdf:Bag>'
              '</mwg-rs:RegionList></mwg-rs:Regions></rdf:Description></rdf:RDF></x:xmpmeta>')
    image = pyexiv2.Image(str(path))
    try:
        image.modify_raw_xmp(packet)
    finally:
        image.close()
    assert b"mwg-rs:Name" in path.read_bytes()
    return path


def test_a_jpegs_xmp_is_read_from_its_segments_not_its_image_data(tmp_path, photo_dir):
    base = np.asarray(Image.open(photo_dir / "astronaut.jpg"))
    data = tagged_jpeg(tmp_path / "a.jpg", base, astronaut_regions()).read_bytes()
    assert b"Eileen Collins" in packet_in(data)
    plain = (photo_dir / "astronaut.jpg").read_bytes()
    stray = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>'
    assert packet_in(plain + stray) is None, "bytes after the image data are no XMP segment"
    assert packet_in(plain[:2] + b"junk" + stray) == stray  # segments that cannot be walked: scanned whole


def astronaut_regions(name: str = "Eileen Collins", mirrored: bool = False) -> list:
    # her face in scikit-image's astronaut: about x 170-290, y 40-180 of 512x512
    return [(name, (512 - 230 if mirrored else 230) / 512, 110 / 512, 120 / 512, 140 / 512)]


def test_names_other_tools_gave_arrive_with_the_photos_and_never_merge(tmp_path, photo_dir):
    """Photos tagged in another tool arrive named; a face its XMP names otherwise than the person it
    looks like starts a person of that name, and `facewatch people` reports the conflict."""
    config = write_config(tmp_path, people=PEOPLE_ON)
    photos = tmp_path / "photos"
    base = np.asarray(Image.open(photo_dir / "astronaut.jpg"))
    tagged_jpeg(photos / "a.jpg", base, astronaut_regions())
    tagged_jpeg(photos / "b.jpg", np.clip(base * 0.8, 0, 255).astype(np.uint8), astronaut_regions())
    tagged_jpeg(photos / "c.jpg", base[:, ::-1].copy(), astronaut_regions("Someone Else", mirrored=True))
    for i, path in enumerate(make_variants(photo_dir, tmp_path / "untagged", 3)):  # like her, no XMP
        shutil.copy(path, photos / f"u{i}.jpg")
    facewatch(config, "scan")
    people = json.loads(facewatch(config, "people", "--json").stdout)
    by_name = {p["name"]: p for p in people}
    assert set(by_name) == {"Eileen Collins", "Someone Else"}, people
    # every face is one of the two (the untagged ones join whichever they look more like); none merged
    assert by_name["Eileen Collins"]["faces"] + by_name["Someone Else"]["faces"] == 6
    assert by_name["Eileen Collins"]["conflicts"] == [{"name": "Someone Else", "path": str(photos / "c.jpg"), "face": 0}]
    assert "is named 'Someone Else' in its XMP" in facewatch(config, "people").stdout
    records = export(config)
    for name, photo in (("Eileen Collins", "a.jpg"), ("Eileen Collins", "b.jpg"), ("Someone Else", "c.jpg")):
        assert records[str(photos / photo)]["faces"][0]["person"]["name"] == name, photo


def test_xmp_write_one_shot_and_the_lightroom_convention(tmp_path, photo_dir):
    config = write_config(tmp_path, people=PEOPLE_ON, metadata={"sidecar_name": "lightroom"})
    photos = tmp_path / "photos"
    shutil.copy(photo_dir / "two_astronauts.jpg", photos / "two.jpg")
    shutil.copy(photo_dir / "coffee.png", photos / "coffee.png")
    facewatch(config, "scan")
    out = facewatch(config, "xmp", "write")
    assert "1 sidecars written" in out.stdout
    assert (photos / "two.xmp").exists() and not (photos / "two.jpg.xmp").exists()
    assert not (photos / "coffee.xmp").exists(), "a photo without faces gets no sidecar"
    original = (photos / "two.jpg").read_bytes()
    keys = exiv2_keys(photos / "two.xmp")
    assert "Xmp.mwg-rs.Regions/mwg-rs:RegionList[2]/mwg-rs:Type" in keys  # two faces
    assert "1 sidecars written" not in facewatch(config, "xmp", "write").stdout  # nothing changed: nothing written
    assert (photos / "two.jpg").read_bytes() == original, "an original was written"
    bad = facewatch(config, "xmp", "write", str(tmp_path / "nowhere.jpg"), check=False)
    assert bad.returncode == 1 and "no analysed photo there" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_the_daemon_keeps_sidecars_in_step_with_people(tmp_path, daemon, photo_dir):
    """metadata.write_xmp: sidecar: the daemon writes each photo's sidecar once its faces are placed,
    and rewrites those of a person's photos when the person is named or renamed."""
    config = write_config(tmp_path, people=PEOPLE_ON, metadata={"write_xmp": "sidecar"})
    photos = tmp_path / "photos"
    d = daemon(config)
    paths = [shutil.copy(p, photos / p.name) for p in make_variants(photo_dir, tmp_path / "made", 3)]
    sidecars = [Path(sidecar_path(str(p))) for p in paths]
    wait_until(lambda: all(s.exists() for s in sidecars), timeout=60, message="the sidecars")
    (person,) = json.loads(facewatch(config, "people", "--json").stdout)
    facewatch(config, "people", "name", str(person["id"]), "Eileen Collins")
    wait_until(lambda: all("People/Eileen Collins" in s.read_text() for s in sidecars), timeout=30,
               message="the name in every sidecar")
    facewatch(config, "people", "name", str(person["id"]), "Eileen M. Collins")
    wait_until(lambda: all("Eileen M. Collins" in json.dumps(pyexiv2_keys(s)) and
                           "People/Eileen Collins<" not in s.read_text() for s in sidecars), timeout=30,
               message="the rename in every sidecar")
    assert status(config)["files"]["done"] == 3
    assert d.stop() == 0
    assert "sidecar_not_written" not in d.log_path.read_text()


def test_the_unit_may_write_only_where_sidecars_go(tmp_path):
    from facewatch.service.unit import render_unit
    plain = render_unit("/opt/facewatch/bin/facewatch", "/etc/facewatch/config.yaml")
    assert "ReadWritePaths" not in plain
    unit = render_unit("/opt/facewatch/bin/facewatch", "/etc/facewatch/config.yaml",
                       sidecar_folders=["/srv/photos", "/home/ann/Pictures"])
    assert "ReadWritePaths=/srv/photos\nReadWritePaths=/home/ann/Pictures\n" in unit
    assert "ProtectSystem=strict" in unit and "ProtectHome=read-only" in unit
