"""Image sources -> uint8 (C, H, W) tensors at a fixed size, decoded once, augmented later on the device.

Small datasets (embedded digits, MNIST-like and CIFAR-like torchvision sets, synthetic) are held in memory
as one uint8 tensor and fetched a whole batch at a time (`__getitems__`), so decoding and collation never
bound the step. Files (an image folder, an HF dataset) are read here as `DecodedImages`, one image per item; the
stages then decode them once, in threads, into the same in-memory form when they fit `data.in_memory_gb`
(decode.py), and only larger pools are decoded per sample, every epoch, in DataLoader workers.

Every source has a train and a test split. When the source has none, the test split is carved by a seeded,
stratified split (`data.test_fraction`, `data.split_seed`) that pretraining also honours, so the test images
are never seen by any stage before scoring.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import UnlabeledData, UserError
from ..progress import say
from .copies import file_copy_keys, pixel_copy_keys
from .folders import folder_layout, folder_root, list_files, not_read, scan, summarize
from .image_formats import image_extensions, is_image, register_decoders, too_large, vector_drawings
from .labels import encode_labels
from .splits import carve


class TensorImages(Dataset):
    """Images already decoded into one uint8 tensor (N, C, H, W); batches are sliced, not collated."""

    def __init__(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None):
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, idx: Sequence[int]):
        index = torch.as_tensor(idx, dtype=torch.long)
        if self.labels is None:
            return {"images": self.images[index]}
        return {"images": self.images[index], "labels": self.labels[index]}


class DecodedImages(Dataset):
    """Decodes one image per item (file path or PIL/array from an HF dataset) to uint8 (C, S, S)."""

    def __init__(self, items, labels, image_size: int, channels: int):
        self.items, self.labels = items, labels
        self.image_size, self.channels = image_size, channels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        item = self.items[i]
        try:
            tensor = pil_to_tensor(item, self.image_size, self.channels)
        except UserError:
            raise
        except Exception as err:  # PIL raises many types for corrupt files
            where = item if isinstance(item, str) else (item.get("path") if isinstance(item, dict) else None)
            raise UserError(f"cannot decode image {where or f'number {i}'}: {err}") from None
        out = {"images": tensor}
        if self.labels is not None:
            out["labels"] = torch.tensor(int(self.labels[i]))
        return out


def pil_to_tensor(img, image_size: int, channels: int) -> torch.Tensor:
    from PIL import Image

    if isinstance(img, dict):  # an HF Image cell left encoded (load_hf): its bytes, or the file they came from
        img = io.BytesIO(img["bytes"]) if img.get("bytes") else img["path"]
    if isinstance(img, (str, io.BytesIO)):
        register_decoders()  # HEIC bytes can arrive here before any file was listed (shards, HF, a fresh worker)
        with Image.open(img) as f:
            _refuse_too_large(f)
            if f.format in ("JPEG", "MPO", "HEIF"):  # JPEG: the decoder scales by 1/2, 1/4 or 1/8 while staying
                # >= the target size (a 12 MP photo for 32 px decodes 6-7x faster); HEIF (pillow-heif): the file's
                # embedded thumbnail when it is at least that size (an iPhone photo's 320x240 one: ~25x faster)
                f.draft(f.mode, (image_size, image_size))
            f.load()  # while the file is open; to_8bit below reads the pixels
            img = f
    elif isinstance(img, Image.Image):
        _refuse_too_large(img)  # opened elsewhere (hub_images), maybe not decoded yet
    else:
        img = Image.fromarray(np.asarray(img))
    img = to_8bit(img, channels)
    if img.size != (image_size, image_size):
        factors = [min(_EXACT_REDUCE, side // (3 * image_size)) for side in img.size]
        if max(factors) == _EXACT_REDUCE:  # resize's own box reduction would use a larger, imprecise factor
            img = img.reduce((max(1, factors[0]), max(1, factors[1])))
        img = img.resize((image_size, image_size), Image.BILINEAR, reducing_gap=3.0)  # a box reduction first when far larger
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy())


# Pillow's reduce() (the box reduction resize runs first when reducing_gap is set) loses precision past a factor of
# 256 on an axis: a white 18,000 x 10,000 scan came out 251 at 8 px, 214 reduced by 2,250 at once
_EXACT_REDUCE = 256


def _refuse_too_large(img) -> None:
    """Before the pixels are decoded: the header check refuses such files in folders, but shards and hub datasets
    reach the decoder without one. DecodedImages names the file."""
    reason = too_large(img.size)
    if reason:
        raise ValueError(f"it is {reason}")


_INTEGER_GREY = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def to_8bit(img, channels: int):
    """Any PIL image -> 8-bit "L" (channels=1) or "RGB", upright, transparent pixels on white.

    PIL's own `convert` is wrong for three kinds of files users have: 16-bit greyscale (microscopy, X-ray) is clipped
    at 255, so nearly every pixel turns white, and float images turn black; transparent PNGs keep whatever colour
    lies under alpha 0 (often black, so black line art on a transparent background vanishes); and phone photos store
    their rotation in EXIF instead of in the pixels."""
    from PIL import Image, ImageOps

    if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation; exif_transpose copies even an upright image (29 ms at 12 MP)
        img = ImageOps.exif_transpose(img)
    if img.mode in _INTEGER_GREY or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and 255 < arr.max() <= 65535):
            arr = arr / 257.0  # the 16-bit range onto 0..255
        elif img.mode == "F" and 0 <= arr.min() and arr.max() <= 1:
            arr = arr * 255.0  # floats in [0, 1]
        elif img.mode != "I" or arr.max() > 65535 or arr.min() < 0:
            lo, hi = arr.min(), arr.max()  # any other range: stretched per image
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    elif img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img if img.mode == ("L" if channels == 1 else "RGB") else img.convert("L" if channels == 1 else "RGB")


@dataclass
class ImageSplit:
    dataset: Dataset
    labels: Optional[torch.Tensor]  # (N,) int64, None when the source has no labels
    num_classes: int
    image_size: int
    channels: int
    class_names: list[str] = field(default_factory=list)  # names of class ids 0..K-1 (folder names, ClassLabel names)
    ids: Optional[list] = None  # per example: file path, or index in the source

    def __len__(self) -> int:
        return len(self.dataset)


def to_size(images: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, channels, image_size, image_size), resized in chunks."""
    if images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:  # ITU-R 601 luma, as PIL's convert("L")
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        chunks = []
        for chunk in images.split(4096):
            resized = F.interpolate(chunk.float(), size=(image_size, image_size), mode="bilinear",
                                    antialias=True, align_corners=False)
            chunks.append(resized.round().clamp(0, 255).to(torch.uint8))
        images = torch.cat(chunks)
    return images.contiguous()


def _in_memory(images: torch.Tensor, labels, cfg: DataConfig, class_names=None, ids=None) -> ImageSplit:
    images = to_size(images, cfg.image_size, cfg.channels)
    lab = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
    num_classes = int(lab.max()) + 1 if lab is not None and len(lab) else 0
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    ids = list(range(len(images))) if ids is None else [int(i) if isinstance(i, (int, np.integer)) else i for i in ids]
    return ImageSplit(TensorImages(images, lab), lab, max(num_classes, len(names) if lab is not None else 0),
                      cfg.image_size, cfg.channels, names if lab is not None else [], ids)


def load_embedded(cfg: DataConfig, split: str) -> ImageSplit:
    """scikit-learn's bundled digits: 1,797 real 8x8 handwritten digits, 10 classes, offline."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.images * (255.0 / 16.0)).round().astype(np.uint8))[:, None]
    y = digits.target.astype(np.int64)
    if split == "validation":
        return None
    idx = carve(y, split, cfg, copies=pixel_copy_keys(x))
    return _in_memory(x[idx], y[idx], cfg, [str(i) for i in range(10)], idx)


def load_synthetic(cfg: DataConfig, split: str) -> ImageSplit:
    if split == "validation":
        return None
    g = torch.Generator().manual_seed(cfg.split_seed + (0 if split == "train" else 1))
    n = cfg.num_samples if split == "train" else max(cfg.num_classes, int(cfg.num_samples * cfg.test_fraction))
    x = torch.randint(0, 256, (n, cfg.channels, cfg.image_size, cfg.image_size), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % cfg.num_classes
    return _in_memory(x, y, cfg, [str(i) for i in range(cfg.num_classes)])


def load_torchvision(cfg: DataConfig, split: str) -> ImageSplit:
    import torchvision.datasets as tvd

    if not cfg.name or not hasattr(tvd, cfg.name):
        raise UserError(f"data.name must be a torchvision dataset class (e.g. FashionMNIST, CIFAR10, STL10), got {cfg.name!r}")
    if not cfg.root:
        raise UserError("data.root must be set for data.source=torchvision")
    if split == "validation":
        return None
    cls = getattr(tvd, cfg.name)
    if cfg.name == "STL10":  # pretraining uses the 100k unlabeled images too
        kwargs = {"split": "train+unlabeled" if split == "pretrain" else ("train" if split == "train" else "test")}
    else:
        kwargs = {"train": split in ("train", "pretrain")}
    try:
        ds = cls(root=os.path.expanduser(cfg.root), download=cfg.download, **kwargs)
    except (RuntimeError, FileNotFoundError) as err:
        raise UserError(f"cannot load torchvision {cfg.name} from data.root={cfg.root}: {str(err).splitlines()[0]}") from None
    data = ds.data
    x = torch.as_tensor(np.asarray(data))
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3):  # (N, H, W, C)
        x = x.permute(0, 3, 1, 2)
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = getattr(ds, "labels", None)
    labels = None if labels is None else np.asarray(labels).astype(np.int64)
    if labels is not None and (labels < 0).any():  # STL10's unlabeled images carry -1
        labels = None
    classes = getattr(ds, "classes", None)
    return _in_memory(x.to(torch.uint8), labels, cfg, [str(c) for c in classes] if classes else None)


_READABLE: set[str] = set()  # files whose header this process has already parsed successfully


def _list_images(root: Path) -> list[str]:
    return list_files(root, is_image)


def _folder_labels(base: Path, classes: list, names: Optional[list[str]], split: str):
    """Class ids for a labeled split; a clear error when the folder is not labeled."""
    loose = sum(c is None for c in classes)
    found = sorted({c for c in classes if c is not None})
    if names is None and len(found) < 2:
        raise UnlabeledData(f"{base} holds unlabeled images (no class sub-folders{' but ' + found[0] + '/' if found else ''}): "
                        "fine-tuning needs at least two classes as sub-folders (ROOT/CLASS/img.png); "
                        "an unlabeled folder can only be pretrained on")
    if loose:
        raise UserError(f"{loose} image(s) sit directly in {base} next to class sub-folders: move them into their class "
                        "folder, or into an unlabeled/ folder beside train/ (pretraining only)")
    return encode_labels(classes, names, where=f"the {split} folder {base}")


def load_folder(cfg: DataConfig, split: str) -> Optional[ImageSplit]:
    """A directory of images, scanned recursively; labels are the first sub-folder's name (see folder_layout)."""
    root = folder_root(cfg.root, "images")
    layout = folder_layout(root)
    if split == "validation" and "validation" not in layout:
        return None
    every, every_class = scan(layout["train"], lambda name: True, layout)
    image = [is_image(f) for f in every]  # once per file: a folder can hold millions
    train_files = [f for f, ok in zip(every, image) if ok]
    train_classes = [c for c, ok in zip(every_class, image) if ok]
    if not train_files:
        drawings = vector_drawings(every)
        raise UserError(f"no images found under {layout['train']} (extensions {', '.join(image_extensions())}); "
                        + (f"it holds {drawings}" if drawings else
                           "if it holds text documents, use a text method (task=mlm)"))
    found = {c for c in train_classes if c is not None}
    labeled = len(found) >= 2 and None not in train_classes
    carved = labeled and "test" not in layout  # a labeled pool without its own test split: carve one
    if split in ("pretrain", "train"):
        others = [f for f, ok in zip(every, image) if not ok]
        _summarize(root, layout, others, len(train_files), sorted(found) if labeled else [],
                   cfg.test_fraction if carved else None)
    if split == "pretrain":
        files = train_files
        if carved:
            if not cfg.skip_corrupt:  # a corrupt file carved into the test split fails now, not after pretraining:
                # removing it later would move the carve and put pretraining images into the test split
                _check_readable(train_files, np.zeros(len(train_files), dtype=np.int64), False, "train")
            train_labels, names = encode_labels(train_classes)
            files = [train_files[i] for i in _carve_folder(train_files, train_labels, "train", cfg, names)]
        if "unlabeled" in layout:
            files = files + _list_images(layout["unlabeled"])
        files, _ = _check_readable(files, np.zeros(len(files), dtype=np.int64), cfg.skip_corrupt, "pretraining")
        return ImageSplit(DecodedImages(files, None, cfg.image_size, cfg.channels), None, 0, cfg.image_size,
                          cfg.channels, [], files)
    train_labels, names = _folder_labels(layout["train"], train_classes, None, "train")
    if split in ("validation", "test") and split in layout:
        files, classes = scan(layout[split], is_image)
        if not files:
            raise UserError(f"no images found under {layout[split]}")
        labels, _ = _folder_labels(layout[split], classes, names, split)
    else:
        files, labels = train_files, train_labels
        if carved:
            idx = _carve_folder(train_files, train_labels, split, cfg, names)
            files, labels = [files[i] for i in idx], train_labels[idx]
    files, labels = _check_readable(files, labels, cfg.skip_corrupt, split)
    lab = torch.from_numpy(labels)
    ds = DecodedImages(files, lab, cfg.image_size, cfg.channels)
    return ImageSplit(ds, lab, len(names), cfg.image_size, cfg.channels, names, files)


def _summarize(root: Path, layout: dict, others: list[str], images: int, classes: list[str], carve_fraction):
    """The folder's one line: images and classes found, unlabeled ones, the carve, and the files not read."""
    unlabeled = 0
    if "unlabeled" in layout:
        pool = list_files(layout["unlabeled"], lambda name: True)
        image = [is_image(f) for f in pool]
        unlabeled = sum(image)
        others = others + [f for f, ok in zip(pool, image) if not ok]
    drawings = vector_drawings(others, of_them=True)
    skipped = [not_read(others, "images") + (f", {drawings}" if drawings else "")] if others else []
    summarize(f"data.root {root}", images, "images", classes, unlabeled, carve_fraction, skipped)


_COPY_KEYS: dict[tuple[str, ...], list] = {}  # the last folder's copy keys: pretraining and scoring carve it alike


def _carve_folder(train_files: list[str], train_labels, split: str, cfg: DataConfig, names) -> np.ndarray:
    """The test carve of a labeled folder without a test/ folder, copies of one image kept on one side."""
    listed = tuple(train_files)
    if listed not in _COPY_KEYS:
        _COPY_KEYS.clear()
        _COPY_KEYS[listed] = file_copy_keys(train_files)
    return carve(train_labels, split, cfg, names, _COPY_KEYS[listed])


def _check_readable(files, labels, skip_corrupt: bool, split: str):
    """Refuses (or, with data.skip_corrupt, drops and counts) files that are not readable images of `split`."""
    from .headers import readable, why_unreadable

    unknown = [f for f in files if f not in _READABLE]
    verdict = dict(zip(unknown, readable(unknown)))
    ok = [verdict.get(f, True) for f in files]
    _READABLE.update(f for f, good in verdict.items() if good)
    bad = [f for f, good in zip(files, ok) if not good]
    if bad and not skip_corrupt:
        them = "it" if len(bad) == 1 else "them"
        why = "" if _broken_link(bad[0]) else f" ({why_unreadable(bad[0])})"
        raise UserError(f"not a readable image: {bad[0]}{why}{_and_more(bad)}; remove {them} or set "
                        "data.skip_corrupt=true")  # a broken link is named so by _and_more
    if bad:
        say(f"data.skip_corrupt: skipped {len(bad)} unreadable image(s) of the {len(files)} {split} images, "
            f"e.g. {bad[0]}")
        keep = np.flatnonzero(ok)
        files, labels = [files[i] for i in keep], labels[keep]
    if not files:
        raise UserError("no readable images left after skipping corrupt files")
    return files, labels


def _broken_link(path: str) -> bool:
    return os.path.islink(path) and not os.path.exists(path)


def _and_more(bad: list[str]) -> str:
    """' (and N more …)' for the error line, saying which are symbolic links to files that are not there (what a
    copied icon theme or a moved dataset leaves), since those look like images in a listing."""
    more = [f"and {len(bad) - 1} more"] if len(bad) > 1 else []
    links = [f for f in bad if _broken_link(f)]
    if links and len(bad) == 1:
        more.append(f"a broken symbolic link to {os.readlink(links[0])}")
    elif links:
        more.append(f"{len(links)} of them broken symbolic links, e.g. {links[0]} -> {os.readlink(links[0])}")
    return f" ({'; '.join(more)})" if more else ""


def load_hf(cfg: DataConfig, split: str) -> Optional[ImageSplit]:
    """A Hugging Face `datasets` hub name, a local directory of split files, or `data.files`, with an image column."""
    import datasets

    from .hf import hf_split, load_dataset_dict, no_labels, with_dataset_columns

    cfg = with_dataset_columns(cfg, getattr(load_dataset_dict(cfg).get("train"), "features", None))
    part = hf_split(cfg, split, cfg.image_column, "data.image_column", texts=False)
    if part is None:
        return None
    if split != "pretrain" and part.labels is None:  # hf_split hands back the whole unlabeled train split
        raise no_labels(cfg, part.dataset, cfg.image_column)
    ds, labels = part.dataset, part.labels
    lab = None if labels is None else torch.from_numpy(labels)
    feature = ds.features.get(cfg.image_column)
    if isinstance(feature, datasets.Image):
        # left encoded: each image is decoded once, when read, at the target size (JPEGs at a reduced scale) --
        # `ds[column]` decoded every image of the split at full size into memory at once
        ds = ds.cast_column(cfg.image_column, datasets.Image(decode=False))
    paths = getattr(feature, "dtype", None) in ("string", "large_string")
    base = _path_base(cfg, split, ds, cfg.image_column) if paths else None
    images = _LazyColumn(ds, cfg.image_column, base)
    dec = DecodedImages(images, lab, cfg.image_size, cfg.channels)
    return ImageSplit(dec, lab, len(part.class_names), cfg.image_size, cfg.channels, part.class_names, part.ids)


class _LazyColumn:
    """One column of an HF dataset, read a row at a time; a column of relative file paths is read from `base`."""

    def __init__(self, ds, col, base: Optional[str] = None):
        self.ds, self.col, self.base = ds, col, base

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        value = self.ds[int(i)][self.col]
        return os.path.join(self.base, value) if self.base and isinstance(value, str) and not os.path.isabs(value) else value


def _path_base(cfg: DataConfig, split: str, ds, column: str) -> Optional[str]:
    """Where a table's relative image paths start (Kaggle's `train.csv` of `images/001.jpg` rows): the table's own
    folder, as for HF's ImageFolder metadata, else the working directory; an error naming both when neither holds
    the first rows' files, before anything trains."""
    from .files import expand_files

    own = {"test": cfg.test_files, "validation": cfg.validation_files}.get(split)
    table = expand_files(list(own or cfg.files))[0] if cfg.files else None
    here = os.path.dirname(os.path.abspath(table)) if table else os.path.expanduser(cfg.name or "")
    sample = [v for v in ds.select(range(min(len(ds), 8)))[column] if v and not os.path.isabs(v)]
    if not sample:
        return None
    for base in (here, os.getcwd()):
        if base and all(os.path.exists(os.path.join(base, v)) for v in sample):
            return base
    raise UserError(f"data.image_column '{column}' holds paths such as {sample[0]!r} that are neither under the "
                    f"table's folder {here} nor under the working directory {os.getcwd()}; write them relative to "
                    "the table's folder (or absolute)")


LOADERS = {
    "embedded": load_embedded,
    "synthetic": load_synthetic,
    "torchvision": load_torchvision,
    "folder": load_folder,
    "hf": load_hf,
    "webdataset": lambda cfg, split: _shards().read_split(cfg, split),
}


def _shards():
    from . import shards

    return shards


def without(split: ImageSplit, drop: np.ndarray) -> ImageSplit:
    """`split` minus the examples at positions `drop` (the leakage guard's duplicates of test images)."""
    import dataclasses

    keep = np.setdiff1d(np.arange(len(split)), drop)
    if isinstance(split.dataset, TensorImages):
        index = torch.as_tensor(keep, dtype=torch.long)
        ds = split.dataset
        dataset = TensorImages(ds.images[index], None if ds.labels is None else ds.labels[index])
    else:
        dataset = torch.utils.data.Subset(split.dataset, keep.tolist())
    labels = None if split.labels is None else split.labels[torch.as_tensor(keep, dtype=torch.long)]
    ids = None if split.ids is None else [split.ids[i] for i in keep]
    return dataclasses.replace(split, dataset=dataset, labels=labels, ids=ids)


def load_images(cfg: DataConfig, split: str) -> Optional[ImageSplit]:
    """split: 'pretrain' (unlabeled training images), 'train' (labeled), 'validation' (the source's own; None
    when it has none) or 'test'."""
    if cfg.source not in LOADERS:
        raise UserError(f"data.source '{cfg.source}' is not an image source; choose one of {sorted(LOADERS)}")
    own_pretrain = cfg.source in ("torchvision", "folder", "hf", "webdataset")  # these know their unlabeled/extra images
    out = LOADERS[cfg.source](cfg, "train" if split == "pretrain" and not own_pretrain else split)
    if out is None:
        return None
    if len(out) == 0:
        raise UserError(f"data.source={cfg.source} gave an empty {split} split")
    return out
