"""Which files are images: the suffixes read as images, and the decoders registered with Pillow.

One list for the folder source, the header check (spawned workers, so no torch here) and webdataset shards. It
covers what users' folders hold: camera and phone formats (JPEG and its .jfif/.jpe/.mpo variants, iPhone's HEIC
through pillow-heif, AVIF), web formats (PNG/APNG, WebP, GIF), scans and microscopy (TIFF, JPEG 2000, the Netpbm
family), and the odd icon or Targa file. Suffixes Pillow has no decoder for in this installation are left out,
so they are counted as skipped rather than failing as unreadable.
"""
from __future__ import annotations

_RASTER = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".heic", ".heif", ".avif", ".webp", ".gif",
           ".bmp", ".dib", ".tif", ".tiff", ".jp2", ".j2k", ".jpx", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi",
           ".ico")


def register_decoders() -> None:
    """pillow-heif's HEIC/HEIF opener (phone photos); idempotent, a no-op where the package is missing."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


def _readable_suffixes() -> tuple[str, ...]:
    from PIL import Image

    register_decoders()
    Image.init()
    known = Image.registered_extensions()
    return tuple(s for s in _RASTER if s in known)


IMAGE_EXTENSIONS = _readable_suffixes()


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)

