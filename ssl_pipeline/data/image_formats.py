"""Which files are images: the suffixes read as images, and the decoders registered with Pillow.

One list for the folder source, the header check (spawned workers, so no torch here) and webdataset shards. It
covers what users' folders hold: camera and phone formats (JPEG and its .jfif/.jpe/.mpo variants, iPhone's HEIC
through pillow-heif, AVIF), web formats (PNG/APNG, WebP, GIF), scans and microscopy (TIFF, JPEG 2000, the Netpbm
family), and the odd icon or Targa file. Suffixes Pillow has no decoder for in this installation are left out,
so they are counted as skipped rather than failing as unreadable. Worked out on first use, not at import: loading
every Pillow plugin and pillow-heif costs ~60 ms, which every command (`--help` too) would pay.
"""
from __future__ import annotations

import threading
from typing import Optional

_RASTER = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".heic", ".heif", ".avif", ".webp", ".gif",
           ".bmp", ".dib", ".tif", ".tiff", ".jp2", ".j2k", ".jpx", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi",
           ".ico")
# drawings Pillow cannot rasterise (it only writes EPS through Ghostscript): named apart, so a folder of icons or
# clip art is not reported as "no images" without the reason
_VECTOR = (".svg", ".svgz", ".eps", ".ai", ".emf", ".wmf")
# The most pixels an image may have to be read (header check and decode alike). Pillow's own guard against
# decompression bombs (an error over 179 megapixels, a warning over 89) is meant for files from strangers; here the
# files are the user's, and panoramas, aerial tiles and scans are that large (a 20000 x 10000 scan was refused as
# "not a readable image"). Read up to 500 megapixels: ~1.5 GB decoded in RGB, one image per decoding thread.
MAX_MEGAPIXELS = 500
_registered = False
_lock = threading.Lock()
_suffixes: Optional[tuple[str, ...]] = None


def register_decoders() -> None:
    """pillow-heif's HEIC/HEIF opener (phone photos), once per process; a no-op where the package is missing. Also
    hands Pillow's pixel limit over to `too_large` (MAX_MEGAPIXELS), which every opener of this package asks.
    Thread-safe: the header check and the decoder call it from pools of threads, and a thread that saw the flag set
    before the opener was registered would find a HEIC file unreadable."""
    global _registered
    if _registered:
        return
    with _lock:
        if _registered:
            return
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # too_large() checks instead, with a limit for the user's own files
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            pass
        else:
            register_heif_opener()
        _registered = True


def too_large(size: tuple[int, int]) -> Optional[str]:
    """Why an image of `size` (width, height; from its header, before any pixel is decoded) is not read, or None."""
    width, height = size
    if width * height <= MAX_MEGAPIXELS * 1_000_000:
        return None
    return (f"{width:,} x {height:,} pixels ({width * height / 1e6:,.0f} megapixels), more than the {MAX_MEGAPIXELS} "
            "read: shrink it or cut it into tiles")


def image_extensions() -> tuple[str, ...]:
    """The suffixes read as images (lower case), those this Pillow can decode."""
    global _suffixes
    if _suffixes is None:
        from PIL import Image

        register_decoders()
        Image.init()
        known = Image.registered_extensions()
        _suffixes = tuple(s for s in _RASTER if s in known)
    return _suffixes


def is_image(name: str) -> bool:
    return name.lower().endswith(image_extensions())


def vector_drawings(files: list[str], of_them: bool = False) -> Optional[str]:
    """'248 [of them] vector drawings (.svg), which are not read: render them to PNG …' for the files of `files`
    that are vector drawings; None when there are none."""
    drawings = [f for f in files if f.lower().endswith(_VECTOR)]
    if not drawings:
        return None
    suffixes = ", ".join(sorted({f[f.rfind("."):].lower() for f in drawings}))
    what = f"vector drawing{'s' if len(drawings) > 1 else ''}"
    return (f"{len(drawings):,} {'of them ' if of_them else ''}{what} ({suffixes}), which are not read: render them "
            "to PNG to use them (e.g. rsvg-convert -w 128 in.svg -o in.png)")
