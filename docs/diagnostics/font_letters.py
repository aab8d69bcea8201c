"""notMNIST as a user could make it offline: the letters A–J rendered from every font file found (Debian's font
packages, `apt-get download fonts-…`), one 28×28 grey PNG per font and letter in `OUT/LETTER/FONT.png` — a class
folder of glyphs whose styles (serif, script, monospace, display, handwriting) vary far more than their shapes.
Fonts without all ten letters are skipped; fonts that render a letter as an empty box or nothing are too. Nothing
is de-duplicated: font packages ship the same design under several names, as real folders hold copies. Used by
README "Unseen data".

    python docs/diagnostics/font_letters.py --fetch data/fonts     # apt-get download + extract PACKAGES (199 MB)
    python docs/diagnostics/font_letters.py data/fonts /usr/share/fonts data/letters
"""
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTFont, TTLibError
from PIL import Image, ImageDraw, ImageFont

PACKAGES = """fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius fonts-adf-universalis
fonts-adf-verana fonts-ancient-scripts fonts-averia-gwf fonts-averia-sans-gwf fonts-averia-serif-gwf fonts-bebas-neue
fonts-beteckna fonts-blankenburg fonts-breip fonts-cabin fonts-cantarell fonts-cmu fonts-comic-neue fonts-croscore
fonts-crosextra-caladea fonts-crosextra-carlito fonts-dancingscript fonts-dkg-handwriting fonts-dosis fonts-ebgaramond
fonts-f500 fonts-fantasque-sans fonts-fanwood fonts-femkeklaver fonts-firacode fonts-freefont-otf fonts-freefont-ttf
fonts-gfs-artemisia fonts-gfs-baskerville fonts-gfs-bodoni-classic fonts-gfs-complutum fonts-gfs-didot
fonts-gfs-didot-classic fonts-gfs-gazis fonts-gfs-neohellenic fonts-gfs-olga fonts-gfs-porson fonts-gfs-solomos
fonts-gfs-theokritos fonts-go fonts-hack fonts-hosny-amiri fonts-humor-sans fonts-inconsolata fonts-isabella
fonts-jetbrains-mono fonts-junicode fonts-klaudia-berenika fonts-kristi fonts-lato fonts-league-spartan
fonts-liberation2 fonts-linuxlibertine fonts-lmodern fonts-monoid fonts-mononoki fonts-mplus fonts-noto-core
fonts-noto-extra fonts-noto-mono fonts-oflb-asana-math fonts-oflb-euterpe fonts-oldstandard fonts-open-sans
fonts-paratype fonts-quattrocento fonts-radisnoir fonts-recommended fonts-roboto-unhinted fonts-rufscript
fonts-sil-andika fonts-sil-charis fonts-sil-gentium fonts-sixtyfour fonts-stix fonts-texgyre fonts-tuffy fonts-uralic
fonts-urw-base35 fonts-yanone-kaffeesatz""".split()
LETTERS = "ABCDEFGHIJ"
SIZE = 28


def has_letters(path: Path) -> bool:
    try:
        with TTFont(str(path), fontNumber=0, lazy=True) as font:
            cmap = font.getBestCmap() or {}
    except (TTLibError, OSError, AssertionError, KeyError, ValueError):
        return False
    return all(ord(c) in cmap for c in LETTERS)


def render(font: ImageFont.FreeTypeFont, letter: str) -> np.ndarray | None:
    """The letter, scaled to fit 24 px and centred on a 28-px white square; None when nothing is drawn."""
    canvas = Image.new("L", (96, 96), 255)
    ImageDraw.Draw(canvas).text((48, 48), letter, font=font, fill=0, anchor="mm")
    ink = np.asarray(canvas) < 128
    if ink.sum() < 20:
        return None
    ys, xs = np.nonzero(ink)
    crop = canvas.crop((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    scale = 24 / max(crop.size)
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.LANCZOS)
    out = Image.new("L", (SIZE, SIZE), 255)
    out.paste(crop, ((SIZE - crop.width) // 2, (SIZE - crop.height) // 2))
    return np.asarray(out)


def main(font_dirs: list[str], out: str) -> None:
    paths = sorted({p for d in font_dirs for p in Path(d).rglob("*") if p.suffix.lower() in (".ttf", ".otf")})
    written = skipped = 0
    for path in paths:
        if not has_letters(path):
            skipped += 1
            continue
        try:
            font = ImageFont.truetype(str(path), 64)
            glyphs = {c: render(font, c) for c in LETTERS}
        except OSError:
            skipped += 1
            continue
        shapes = [g for g in glyphs.values() if g is not None]
        # a font drawing every letter as the same box (.notdef) has one image ten times
        if len(shapes) < len(LETTERS) or len({hashlib.sha1(g.tobytes()).hexdigest() for g in shapes}) < 3:
            skipped += 1
            continue
        name = path.stem.replace(" ", "_")
        for c, g in glyphs.items():
            os.makedirs(f"{out}/{c}", exist_ok=True)
            Image.fromarray(g).save(f"{out}/{c}/{name}.png")
        written += 1
    print(f"{written} fonts × {len(LETTERS)} letters written to {out}; {skipped} font files skipped")


def fetch(dest: str) -> None:
    """The font packages, downloaded from the package registry and unpacked into `dest` (no root needed)."""
    import subprocess

    os.makedirs(dest, exist_ok=True)
    for package in PACKAGES:
        if subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True).returncode:
            print(f"not downloaded: {package}")
    for deb in sorted(Path(dest).glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), dest], check=True)
        deb.unlink()


if __name__ == "__main__":
    if sys.argv[1] == "--fetch":
        fetch(sys.argv[2])
    else:
        main(sys.argv[1:-1], sys.argv[-1])
