"""Labeled data per modality, in the one shape the fine-tune methods need.

Each adapter gives: train/test labels, a torch Dataset over any subset of a split (batches are dicts of the
encoder's inputs + "labels"), the encoder (pretrained, or the same architecture from random weights),
a device-side training transform, and raw inputs for the classic scikit-learn baseline.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..augment import StrongAugment, to_unit_float, weak_augment
from ..config import Config
from ..errors import UserError


def pretrained_student(name: str, modality: str, expected: dict) -> nn.Module | None:
    """`finetune.student` naming an encoder directory this project exported (a smaller encoder pretrained on the
    same unlabeled data, say): that encoder, in train mode — or None when `name` is not one. `expected`: the spec
    fields the labeled data here were prepared for (image size, channels, ...); a student that differs would
    read them wrongly, so it is refused with the field named."""
    from ..export import load_encoder
    from ..spec import SPEC_FILE

    if not (Path(name) / SPEC_FILE).is_file():
        if Path(name).exists():
            raise UserError(f"finetune.student {name} is not an exported encoder (no {SPEC_FILE}); name a "
                            "directory `pretrain` wrote (OUTPUT_DIR/encoder), a timm model or a text size preset")
        return None
    student = load_encoder(name, expect_modality=modality, role="finetune.student")
    for key, want in expected.items():
        if student.spec.get(key) != want:
            raise UserError(f"finetune.student {name}: its {key} is {student.spec.get(key)!r}, but the teacher's and "
                            f"this run's data are {want!r}")
    return student.train()


class SubsetView(Dataset):
    """A subset of a batch-fetching dataset (`__getitems__`)."""

    def __init__(self, base: Dataset, idx: np.ndarray):
        self.base, self.idx = base, np.asarray(idx)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitems__(self, positions):
        return self.base.__getitems__(self.idx[np.asarray(positions)].tolist())

    def __getitem__(self, i):
        return self.__getitems__([i])

    def lengths(self):
        """Each example's length when the base dataset has lengths (texts): embedding orders by it."""
        return self.base.lengths()[self.idx] if hasattr(self.base, "lengths") else None


class VisionLabeled:
    modality = "vision"
    input_keys = ("images",)

    def __init__(self, cfg: Config, spec: dict, eval_split: str = "test"):
        import dataclasses

        from ..data.decode import decoded_once
        from ..data.images import load_images

        # images at the size and channels the encoder was trained on
        data = dataclasses.replace(cfg.data, image_size=spec["image_size"], channels=spec["channels"])
        self.spec, self.cfg = spec, cfg
        self.train = load_images(data, "train")
        self.test = load_images(data, eval_split)  # None: no own validation split (carved from train instead)
        for name, split in (("train", self.train), (eval_split, self.test)):
            if split is not None and split.labels is None:
                raise UserError(f"data.source={data.source} has no labels in its {name} split: fine-tuning needs "
                                "labeled examples (see README 'Your own data')")
        self.num_classes = max(self.train.num_classes, int(self.train.labels.max()) + 1)
        names = self.train.class_names
        self.class_names = names if len(names) == self.num_classes else [str(i) for i in range(self.num_classes)]
        self.train_labels = self.train.labels.numpy()
        self.test_labels = None if self.test is None else self.test.labels.numpy()
        # folder / hf: decoded once (in threads), reused by every cell of the grid
        self.train = decoded_once(self.train, data, "labeled train images", always=True)
        self.test = decoded_once(self.test, data, f"{eval_split} images", always=True)
        self.augment = weak_augment(spec["image_size"])

    @property
    def views_ahead(self) -> bool:
        """Training views made one batch ahead in a background thread (`pretrain.overlap_views`, as in pretraining)."""
        return self.cfg.pretrain.overlap_views

    @functools.cached_property
    def strong(self) -> StrongAugment:
        """Built on first use: only the fixmatch row needs it."""
        return StrongAugment(self.spec["image_size"])

    def dataset(self, split: str, idx) -> Dataset:
        base = (self.train if split == "train" else self.test).dataset
        return SubsetView(base, idx)

    def train_copy_keys(self) -> list[bytes]:
        """Identical pixels at the encoder's size (the leakage guard's "exact"): the validation carve's copies."""
        from ..data.copies import pixel_copy_keys

        return pixel_copy_keys(self.train.dataset.images)

    def test_fingerprint(self) -> str:
        from ..data.leakage import image_split_fingerprint

        return image_split_fingerprint(self.test.dataset)

    def encoder(self, pretrained: bool, path) -> nn.Module:
        from ..export import load_encoder
        from ..models.vision import VisionEncoder, create_backbone

        if pretrained:
            return self._memory_format(load_encoder(path, expect_modality="vision").train())
        backbone = create_backbone(self.spec["timm_name"], self.spec["channels"], self.spec["small_stem"])
        return self._memory_format(VisionEncoder(backbone, self.spec))

    def student_encoder(self, name: str, path) -> tuple[nn.Module, bool]:
        """distill_small's student and whether it is pretrained: an exported encoder directory, or timm model `name`
        from random weights, with the teacher's input size and channels."""
        from ..models.vision import VisionEncoder, create_backbone

        pretrained = pretrained_student(name, "vision", {k: self.spec[k] for k in ("image_size", "channels")})
        if pretrained is not None:
            return self._memory_format(pretrained), True
        backbone = create_backbone(name, self.spec["channels"], self.spec["small_stem"])
        spec = {**self.spec, "timm_name": name, "embedding_dim": int(backbone.num_features)}
        return self._memory_format(VisionEncoder(backbone, spec)), False

    def _memory_format(self, encoder):
        """Every encoder the grid trains or embeds with, in the memory format pretraining used
        (`pretrain.channels_last`, on by default)."""
        return encoder.use_channels_last() if self.cfg.pretrain.channels_last else encoder

    def train_transform(self, batch: dict) -> dict:
        """Weak augmentation (crop + flip) on the device, same for fine-tuning and the supervised baseline."""
        if not self.cfg.finetune.augment:
            return batch
        with torch.no_grad():
            return {**batch, "images": self.augment(to_unit_float(batch["images"]))}

    def strong_transform(self, batch: dict) -> dict:
        """fixmatch's strong view: crop + flip, RandAugment and a cutout (augment.StrongAugment)."""
        with torch.no_grad():
            return {**batch, "images": self.strong(to_unit_float(batch["images"]))}

    def classic_inputs(self, split: str, idx) -> np.ndarray:
        images = (self.train if split == "train" else self.test).dataset.images[torch.as_tensor(idx)]
        return images.flatten(1).float().numpy() / 255.0

    def classic_model(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.1))


class TokenizedTexts(Dataset):
    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        self.input_ids, self.attention_mask, self.labels = input_ids, attention_mask, labels

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> np.ndarray:
        return self.attention_mask.sum(1).numpy()

    def __getitems__(self, idx):
        index = torch.as_tensor(idx, dtype=torch.long)
        mask = self.attention_mask[index]
        width = max(int(mask.sum(1).max()), 1)  # trim the batch to its longest text: no padding compute
        return {"input_ids": self.input_ids[index, :width], "attention_mask": mask[:, :width],
                "labels": self.labels[index]}


class TextLabeled:
    modality = "text"
    input_keys = ("input_ids", "attention_mask")
    views_ahead = False  # fixmatch's masking stays on the trainer's thread: the encoder's dropout draws from the
    # same global RNG, and two threads drawing from it would make runs unrepeatable

    def __init__(self, cfg: Config, spec: dict, encoder_path, eval_split: str = "test"):
        from transformers import AutoTokenizer

        from ..data.text import load_texts
        from ..masking import TokenMasker

        self.cfg, self.spec = cfg, spec
        self.train = load_texts(cfg.data, "train")
        self.test = load_texts(cfg.data, eval_split)  # None: no own validation split (carved from train instead)
        self.num_classes = self.train.num_classes
        self.class_names = self.train.class_names
        self.train_labels = self.train.labels
        self.test_labels = None if self.test is None else self.test.labels
        self.tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
        self.max_length = spec.get("max_length", 128)
        mask_id = next((i for i in (self.tokenizer.mask_token_id, self.tokenizer.unk_token_id) if i is not None), 0)
        self.masker = TokenMasker(self.tokenizer, len(self.tokenizer), mask_id)  # fixmatch's strong view
        self._sets = {name: self._tokenize(split) for name, split in (("train", self.train), ("test", self.test))
                      if split is not None}
        self.input_lengths = self._lengths(self.train.texts)

    def _lengths(self, texts: list[str]) -> dict:
        """How much of the training texts the encoder reads: long documents are classified from their first
        `max_length` tokens (while `classic` reads them whole), which the report says when it is most of them."""
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "sequence longer than the model's maximum": the point of counting
        try:
            lengths = np.array([len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]])
        finally:
            hf_logging.set_verbosity(verbosity)
        return {"max_length": self.max_length, "truncated": float((lengths > self.max_length).mean()),
                "median_tokens": int(np.median(lengths))}

    def _tokenize(self, split) -> TokenizedTexts:
        enc = self.tokenizer(split.texts, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return TokenizedTexts(enc["input_ids"], enc["attention_mask"], torch.as_tensor(split.labels))

    def dataset(self, split: str, idx) -> Dataset:
        return SubsetView(self._sets[split], idx)

    def train_copy_keys(self) -> list[str]:
        from ..data.copies import text_copy_keys

        return text_copy_keys(self.train.texts)

    def test_fingerprint(self) -> str:
        from ..data.leakage import text_split_fingerprint

        return text_split_fingerprint(self.test.texts)

    def encoder(self, pretrained: bool, path) -> nn.Module:
        from transformers import AutoConfig, AutoModel

        from ..export import load_encoder
        from ..models.text import TextEncoder

        if pretrained:
            return load_encoder(path, expect_modality="text").train()
        config = AutoConfig.from_pretrained(str(path))
        model = AutoModel.from_config(config, add_pooling_layer=False, attn_implementation="sdpa")
        return TextEncoder(model, self.tokenizer, self.spec)

    def student_encoder(self, name: str, path) -> tuple[nn.Module, bool]:
        """distill_small's student and whether it is pretrained: an exported encoder directory (with the teacher's
        tokenizer), or the encoder's architecture and tokenizer at size preset `name`, from random weights."""
        from transformers import AutoConfig, AutoModel

        from ..models.text import SIZE_PRESETS, TextEncoder

        pretrained = pretrained_student(name, "text", {})
        if pretrained is not None:
            if pretrained.tokenizer.get_vocab() != self.tokenizer.get_vocab():
                raise UserError(f"finetune.student {name} has another tokenizer than the teacher's: the texts are "
                                "tokenized once, with the teacher's; pretrain the student with model.tokenizer="
                                f"{path}")
            positions = pretrained.model.config.max_position_embeddings
            if positions < self.max_length:
                raise UserError(f"finetune.student {name} reads at most {positions} tokens; this run's texts are "
                                f"{self.max_length}")
            return pretrained, True
        if name not in SIZE_PRESETS:
            raise UserError(f"finetune.student '{name}' is neither an exported encoder directory nor a text size "
                            f"preset; choose one of {list(SIZE_PRESETS)}")
        hidden, layers, heads, inter = SIZE_PRESETS[name]
        config = AutoConfig.from_pretrained(str(path))
        config.update({"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
                       "intermediate_size": inter})
        model = AutoModel.from_config(config, add_pooling_layer=False, attn_implementation="sdpa")
        return TextEncoder(model, self.tokenizer, self.spec), False

    def train_transform(self, batch: dict) -> dict:
        return batch

    def strong_transform(self, batch: dict) -> dict:
        """fixmatch's strong view: BERT-style masking of finetune.fixmatch.text_mask_probability of the tokens (the
        corruption an MLM-pretrained encoder knows; a tokenizer without [MASK] gets [UNK] there)."""
        masked, _, _ = self.masker(batch["input_ids"], self.cfg.finetune.fixmatch.text_mask_probability)
        return {**batch, "input_ids": masked}

    def classic_inputs(self, split: str, idx) -> list[str]:
        texts = (self.train if split == "train" else self.test).texts
        return [texts[i] for i in idx]

    def classic_model(self):
        """TF-IDF (finetune.classic.text_features) + logistic regression. Character n-grams inside words read what
        word tokens miss: a Japanese sentence has no spaces to split it into words, and an inflected German or
        Russian word shares its stem with its other forms."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        kinds = {"words": TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                 "chars": TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=1)}
        chosen = [kinds[k] for k in self.cfg.finetune.classic.text_features.split("+")]
        return make_pipeline(chosen[0] if len(chosen) == 1 else make_union(*chosen),
                             LogisticRegression(max_iter=1000, C=10.0))


class ValidationView:
    """Scores on a stratified, seeded carve of the train split instead of the test split.

    Recipes (lr, head, epochs, augmentation ...) are tuned with `finetune.evaluate_on=validation`; the test
    split is then used once, for the reported numbers. Labeled subsets come from the rest of the train split.
    """

    def __init__(self, data, fraction: float, seed: int):
        from ..data.splits import VALIDATION_CARVE, held_out_together

        self.data = data
        held_out = held_out_together(np.asarray(data.train_labels), fraction, seed + 1, data.class_names,
                                     VALIDATION_CARVE, data.train_copy_keys())  # no copy of a fitted example is scored
        self.fit_idx, self.val_idx = np.flatnonzero(~held_out), np.flatnonzero(held_out)
        self.train_labels = data.train_labels[self.fit_idx]
        self.test_labels = data.train_labels[self.val_idx]

    def __getattr__(self, name: str):
        """Everything that does not depend on which rows are train or scored (encoders, students, transforms, class
        names ...) is the wrapped data's; a list of names here once missed `student_encoder`."""
        if name == "data":  # not set yet (copy / pickle): no recursion
            raise AttributeError(name)
        return getattr(self.data, name)

    def _map(self, split: str, idx):
        return self.fit_idx[np.asarray(idx)] if split == "train" else self.val_idx[np.asarray(idx)]

    def dataset(self, split: str, idx):
        return self.data.dataset("train", self._map(split, idx))

    def classic_inputs(self, split: str, idx):
        return self.data.classic_inputs("train", self._map(split, idx))


def labeled_data(cfg: Config, spec: dict, encoder_path):
    """Train + the split that is scored: test, or for `evaluate_on=validation` the source's own validation split
    (a val/ folder, data.validation_files, a hub 'validation' split) or else a carve of train."""
    split = cfg.finetune.evaluate_on
    if spec["modality"] == "vision":
        data = VisionLabeled(cfg, spec, split)
    else:
        data = TextLabeled(cfg, spec, encoder_path, split)
    if data.test is None:
        return ValidationView(data, cfg.finetune.validation_fraction, cfg.data.split_seed)
    return data
