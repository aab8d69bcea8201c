"""Colour images in semantic classes, with near-copies inside them: every emoji of Unicode 15 drawn from Debian's
Noto Color Emoji font, one RGBA PNG each (transparent background) in a folder named after its Unicode group —
Smileys & Emotion, People & Body, Animals & Nature, Food & Drink, Travel & Places, Activities, Objects, Symbols,
Flags (the Component group's skin-tone and hair swatches are not fully-qualified emoji, so not drawn). 3,655
images; classes from 85 (Activities) to 2,148 (People & Body: most gestures in six skin tones, near-copies in one
class). Labels: what an emoji shows. Used by README "Unseen data".

    apt-get download unicode-data fonts-noto-color-emoji
    for d in unicode-data_*.deb fonts-noto-color-emoji_*.deb; do dpkg-deb -x $d emoji_pkgs; done
    python docs/diagnostics/emoji_groups.py emoji_pkgs/usr/share/unicode/emoji/emoji-test.txt \
        emoji_pkgs/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf data/emoji
"""
import re
import sys
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SIZE = 72  # pixels a side; the font's bitmaps are 136 x 128 (CBDT at 109 px)
LEFT_OUT = {"Component"}  # swatches, should a later emoji-test.txt mark them fully-qualified


def emoji(test_file: Path):
    """(characters, name, group) of every fully-qualified emoji of the Unicode emoji-test.txt file."""
    group = None
    for line in test_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group: "):
            group = line[len("# group: "):].strip()
        elif "; fully-qualified" in line and group not in LEFT_OUT:
            codes, rest = line.split(";", 1)
            name = rest.split("#", 1)[1].split(" ", 3)[-1].strip()  # "# 😀 E1.0 grinning face"
            yield "".join(chr(int(c, 16)) for c in codes.split()), name, group


def draw(chars: str, font) -> Image.Image | None:
    """The emoji on a transparent square, or None when the font draws nothing (an emoji newer than the font)."""
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((80, 80), chars, font=font, embedded_color=True, anchor="mm")
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return square.resize((SIZE, SIZE), Image.LANCZOS)


def main(test_file: str, font_file: str, out: str) -> None:
    font = ImageFont.truetype(font_file, 109, layout_engine=ImageFont.Layout.RAQM)  # RAQM: ZWJ sequences, flags
    counts, blank = Counter(), 0
    for chars, name, group in emoji(Path(test_file)):
        image = draw(chars, font)
        if image is None:
            blank += 1
            continue
        folder = Path(out) / re.sub(r"\W+", "_", group.lower()).strip("_")
        folder.mkdir(parents=True, exist_ok=True)
        counts[folder.name] += 1
        image.save(folder / f"{counts[folder.name]:04d}_{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}.png")
    print(f"{sum(counts.values())} images in {len(counts)} classes -> {out} ({blank} drawn blank, left out)")
    for group, n in counts.most_common():
        print(f"  {group}: {n}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
