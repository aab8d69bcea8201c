"""Image sources -> uint8 (C, H, W) tensors at a fixed size, decoded once, augmented later on the device.

Small datasets (embedded digits, MNIST-like and CIFAR-like torchvision sets, synthetic) are held in memory
as one uint8 tensor and fetched a whole batch at a time (`__getitems__`), so decoding and collation never
bound the step. Large ones (an image folder, an HF dataset) are decoded per sample in DataLoader workers.

Every source has a train and a test split. When the source has none, the test split is carved by a seeded,
stratified split (`data.test_fraction`, `data.split_seed`) that pretraining also honours, so the test images
are never seen by any stage before scoring.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import UserError
from .files import expand_files, file_format

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


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


def collate_batch(items):
    """Collate for datasets that return whole batches (`__getitems__`) or single dict samples."""
    if isinstance(items, dict):
        return items
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}


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
            raise UserError(f"cannot decode image {item if isinstance(item, str) else i}: {err}") from None
        out = {"images": tensor}
        if self.labels is not None:
            out["labels"] = torch.tensor(int(self.labels[i]))
        return out


def pil_to_tensor(img, image_size: int, channels: int) -> torch.Tensor:
    from PIL import Image

    if isinstance(img, str):
        with Image.open(img) as f:
            img = f.convert("L" if channels == 1 else "RGB")
    elif not isinstance(img, Image.Image):
        img = Image.fromarray(np.asarray(img))
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy())


@dataclass
class ImageSplit:
    dataset: Dataset
    labels: Optional[torch.Tensor]  # (N,) int64, None when the source has no labels
    num_classes: int
    image_size: int
    channels: int

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


def carve(labels: np.ndarray, split: str, cfg: DataConfig) -> np.ndarray:
    """Indices of `split` in a seeded, stratified train/test carve of a source that has no test split."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    stratify = labels if labels is not None and len(np.unique(labels)) > 1 else None
    train_idx, test_idx = train_test_split(idx, test_size=cfg.test_fraction, random_state=cfg.split_seed,
                                           stratify=stratify)
    return np.sort(train_idx if split == "train" else test_idx)


def _in_memory(images: torch.Tensor, labels, cfg: DataConfig) -> ImageSplit:
    images = to_size(images, cfg.image_size, cfg.channels)
    lab = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
    num_classes = int(lab.max()) + 1 if lab is not None and len(lab) else 0
    return ImageSplit(TensorImages(images, lab), lab, num_classes, cfg.image_size, cfg.channels)


def load_embedded(cfg: DataConfig, split: str) -> ImageSplit:
    """scikit-learn's bundled digits: 1,797 real 8x8 handwritten digits, 10 classes, offline."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.images * (255.0 / 16.0)).round().astype(np.uint8))[:, None]
    y = digits.target.astype(np.int64)
    idx = carve(y, split, cfg)
    out = _in_memory(x[idx], y[idx], cfg)
    out.num_classes = 10
    return out


def load_synthetic(cfg: DataConfig, split: str) -> ImageSplit:
    g = torch.Generator().manual_seed(cfg.split_seed + (0 if split == "train" else 1))
    n = cfg.num_samples if split == "train" else max(cfg.num_classes, int(cfg.num_samples * cfg.test_fraction))
    x = torch.randint(0, 256, (n, cfg.channels, cfg.image_size, cfg.image_size), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % cfg.num_classes
    out = _in_memory(x, y, cfg)
    out.num_classes = cfg.num_classes
    return out


def load_torchvision(cfg: DataConfig, split: str) -> ImageSplit:
    import torchvision.datasets as tvd

    if not cfg.name or not hasattr(tvd, cfg.name):
        raise UserError(f"data.name must be a torchvision dataset class (e.g. FashionMNIST, CIFAR10, STL10), got {cfg.name!r}")
    if not cfg.root:
        raise UserError("data.root must be set for data.source=torchvision")
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
    out = _in_memory(x.to(torch.uint8), labels, cfg)
    classes = getattr(ds, "classes", None)
    if classes:
        out.num_classes = len(classes)
    return out


def _list_images(root: Path) -> list[str]:
    files = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(dirpath, n))
    files.sort()
    return files


def load_folder(cfg: DataConfig, split: str) -> ImageSplit:
    """A directory of images, scanned recursively; labels are the first sub-directory's name."""
    if not cfg.root:
        raise UserError("data.root must be set for data.source=folder")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.root does not exist or is not a directory: {root}")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / ("test" if split == "test" else "train") if has_splits else root
    files = _list_images(base)
    if not files:
        raise UserError(f"no images found under {base} (extensions {', '.join(IMAGE_EXTENSIONS)})")
    class_of = [Path(f).relative_to(base).parts[0] if len(Path(f).relative_to(base).parts) > 1 else "" for f in files]
    class_names = sorted(set(class_of))
    labels = np.array([class_names.index(c) for c in class_of], dtype=np.int64)
    if not has_splits:
        idx = carve(labels, "test" if split == "test" else "train", cfg)
        files, labels = [files[i] for i in idx], labels[idx]
    files, labels = _check_readable(files, labels, cfg.skip_corrupt)
    lab = torch.from_numpy(labels) if len(class_names) > 1 else None
    ds = DecodedImages(files, lab, cfg.image_size, cfg.channels)
    return ImageSplit(ds, lab, len(class_names) if lab is not None else 0, cfg.image_size, cfg.channels)


def _header_ok(path: str) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:  # parses the header only: fast enough for 100k files
            img.size
        return True
    except Exception:
        return False


def _check_readable(files, labels, skip_corrupt: bool):
    """Refuses (or, with data.skip_corrupt, drops and counts) files that are not readable images."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:  # file opens are I/O bound
        ok = list(pool.map(_header_ok, files, chunksize=256))
    bad = [f for f, good in zip(files, ok) if not good]
    if bad and not skip_corrupt:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(f"not a readable image: {bad[0]}{more}; remove it or set data.skip_corrupt=true")
    if bad:
        print(f"data.skip_corrupt: skipped {len(bad)} unreadable image(s) of {len(files)}, e.g. {bad[0]}", flush=True)
        keep = np.flatnonzero(ok)
        files, labels = [files[i] for i in keep], labels[keep]
    if not files:
        raise UserError("no readable images left after skipping corrupt files")
    return files, labels


def load_hf(cfg: DataConfig, split: str) -> ImageSplit:
    """A Hugging Face `datasets` hub name, or local files (`data.files`, e.g. parquet), with an image column."""
    import datasets

    need_carve = True
    try:
        if cfg.files:
            files = expand_files(cfg.files)
            ds = datasets.load_dataset(file_format(files[0], default="parquet"), data_files=files, split="train")
        else:
            if not cfg.name:
                raise UserError("data.name (a hub dataset) or data.files must be set for data.source=hf")
            dsd = datasets.load_dataset(cfg.name)
            need_carve = "test" not in dsd
            ds = dsd["test"] if split == "test" and not need_carve else dsd["train"]
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"cannot load HF dataset {cfg.name or cfg.files}: {str(err).splitlines()[0]}") from None
    if cfg.image_column not in ds.column_names:
        raise UserError(f"data.image_column '{cfg.image_column}' not in dataset columns {ds.column_names}")
    labels = np.asarray(ds[cfg.label_column], dtype=np.int64) if cfg.label_column in ds.column_names else None
    if need_carve:
        idx = carve(labels if labels is not None else np.zeros(len(ds)), "test" if split == "test" else "train", cfg)
        ds = ds.select(idx)
        labels = labels[idx] if labels is not None else None
    lab = None if labels is None else torch.from_numpy(labels)
    images = ds[cfg.image_column] if len(ds) <= 100_000 else _LazyColumn(ds, cfg.image_column)
    dec = DecodedImages(images, lab, cfg.image_size, cfg.channels)
    return ImageSplit(dec, lab, int(lab.max()) + 1 if lab is not None else 0, cfg.image_size, cfg.channels)


class _LazyColumn:
    def __init__(self, ds, col):
        self.ds, self.col = ds, col

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[int(i)][self.col]


LOADERS = {
    "embedded": load_embedded,
    "synthetic": load_synthetic,
    "torchvision": load_torchvision,
    "folder": load_folder,
    "hf": load_hf,
}


def load_images(cfg: DataConfig, split: str) -> ImageSplit:
    """split: 'pretrain' (unlabeled training images), 'train' (labeled training images) or 'test'."""
    if cfg.source not in LOADERS:
        raise UserError(f"data.source '{cfg.source}' is not an image source; choose one of {sorted(LOADERS)}")
    out = LOADERS[cfg.source](cfg, "train" if split == "pretrain" and cfg.source != "torchvision" else split)
    if len(out) == 0:
        raise UserError(f"data.source={cfg.source} gave an empty {split} split")
    return out
