"""What every vision method shares: the unlabeled images, a timm backbone (from scratch or `model.init_from`),
batched on-device views and the exported encoder. A method adds its heads, its loss and its hooks."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..augment import normalize, simclr_augment, to_unit_float
from ..config import Config, check_stream_budget
from ..data.decode import decoded_once
from ..data.images import TensorImages, load_images
from ..data.splits import collate_batch
from ..engine import Task
from ..errors import UserError
from ..export import save_vision_encoder


class VisionTask(Task):
    """Subclasses set `self.model` (with a `.backbone`, the encoder that is exported) and define `loss`."""

    modality = "vision"

    def __init__(self, cfg: Config, accelerator):
        # timm (and torchvision under it) is imported here, not at module level: loading the config imports every
        # method module for its schema, and a text run or a config error should not pay ~3 s for it
        from ..models.vision import check_image_size, create_backbone

        if cfg.data.source == "webdataset":  # streamed tar shards: each process reads its own
            from ..data.shards import StreamedImages, shard_urls

            check_stream_budget(cfg, "data.source=webdataset")
            self.presharded = True
            self.data = StreamedImages(shard_urls(cfg.data, "pretrain"), cfg.data, accelerator.process_index,
                                       accelerator.num_processes, cfg.seed)
            self.leakage = {"checked": False, "reason": "streamed shards"}
        elif cfg.data.source == "hf" and cfg.data.streaming:  # a hub image dataset read as it trains
            from ..data.hub_images import StreamedHubImages

            check_stream_budget(cfg, "data.streaming=true")
            self.presharded = True
            self.data = StreamedHubImages(cfg.data, accelerator.process_index, accelerator.num_processes, cfg.seed)
            self.leakage = {"checked": False, "reason": "streamed dataset"}
        else:
            self.data = decoded_once(load_images(cfg.data, "pretrain"), cfg.data, "pretraining images")
            self.leakage = self._guard_leakage(cfg, accelerator)
        if cfg.model.init_from:  # continued pretraining: the architecture comes from the checkpoint
            from ..models.init import vision_init

            with accelerator.main_process_first():  # a hub download happens once
                backbone, name, small_stem = vision_init(cfg)
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=name, small_stem=small_stem))
        else:
            backbone = create_backbone(cfg.model.backbone, cfg.data.channels, cfg.model.small_stem)
        self.cfg, self.backbone = cfg, backbone
        self.embedding_dim = check_image_size(backbone, cfg.data.channels, cfg.data.image_size)
        self.augment = simclr_augment(cfg.pretrain.augment, cfg.data.image_size, cfg.data.channels)

    def _guard_leakage(self, cfg: Config, accelerator) -> dict:
        """Count pretraining images that duplicate a test image; with data.dedupe drop them (before training)."""
        from ..data.images import without
        from ..data.leakage import (describe, image_duplicates, image_split_fingerprint, leakage_record,
                                     test_split_or_reason)
        from ..engine import computed_once

        def check() -> tuple[dict, object]:
            if not cfg.data.leakage_check:
                return leakage_record(None, None, False, "data.leakage_check=false"), None
            test, why = test_split_or_reason(lambda: decoded_once(load_images(cfg.data, "test"), cfg.data, "test images"))
            if test is None or cfg.data.source == "synthetic":
                return leakage_record(None, None, False, why or "synthetic data"), None
            dups = image_duplicates(self.data.dataset, test.dataset)
            return leakage_record(dups, image_split_fingerprint(test.dataset), cfg.data.dedupe), dups.pool_indices

        record, drop = computed_once(accelerator, check)
        if cfg.data.dedupe and drop is not None and len(drop):
            self.data = without(self.data, drop)
        accelerator.print(describe(record, "images"))
        return record

    def finish_model(self, model: nn.Module) -> nn.Module:
        """Call with the method's full model: memory format as configured."""
        if self.cfg.pretrain.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        return model

    def dataloader(self, batch_size: int, generator: torch.Generator) -> DataLoader:
        if self.presharded:
            return DataLoader(self.data, batch_size=batch_size, num_workers=self.cfg.data.num_workers,
                              persistent_workers=self.cfg.data.num_workers > 0)
        n = len(self.data)
        if self.cfg.pretrain.drop_last and batch_size > n:
            raise UserError(f"pretrain.batch_size={batch_size} is larger than the {n} training images "
                            "(with pretrain.drop_last=true no batch would be formed)")
        # images in memory are indexed a batch at a time: worker processes would only compete with the step for cores
        workers = 0 if isinstance(self.data.dataset, TensorImages) else self.cfg.data.num_workers
        return DataLoader(self.data.dataset, batch_size=batch_size, shuffle=True, drop_last=self.cfg.pretrain.drop_last,
                          collate_fn=collate_batch, num_workers=workers, generator=generator,
                          persistent_workers=workers > 0)

    def prepare(self, batch: dict) -> dict:
        """Adds the two augmented views (`views`); the engine runs this ahead of the model step (prefetch.py)."""
        return {**batch, "views": self.views(batch["images"])}

    def batch_items(self, batch: dict) -> dict:
        return {"samples": len(batch["images"])}

    def views(self, images: torch.Tensor, n_views: int = 2, augment: nn.Module | None = None) -> torch.Tensor:
        """uint8 (B, C, H, W) -> normalised float (n_views * B, C, H', W'), view k at rows [k*B, (k+1)*B)."""
        with torch.no_grad():
            x = to_unit_float(images)
            x = (augment or self.augment)(torch.cat([x] * n_views))
            return self._in_model_memory_format(normalize(x))

    def _in_model_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs laid out as `finish_model` laid out the weights (NHWC with `pretrain.channels_last`)."""
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.pretrain.channels_last else x

    def paired_view_loss(self, model: nn.Module, batch: dict, accelerator) -> torch.Tensor:
        """`self.criterion(z0, z1)` on both views' outputs from one forward (one BatchNorm batch; the loss in fp32):
        the whole loss of the joint-embedding methods without a teacher (SimCLR, DCL, VICReg)."""
        with accelerator.autocast():
            z = model(batch["views"])
        return self.criterion(*z.float().chunk(2))

    def monitor_inputs(self):
        """A fixed, seeded sample of the labeled train split (the pretraining images when there are no labels)."""
        if not hasattr(self, "_monitor_set") and self.presharded and self.cfg.data.source == "hf":
            from ..data.hub_images import first_images

            self._monitor_set = first_images(self.cfg.data, self.cfg.pretrain.monitor_samples)
        if not hasattr(self, "_monitor_set") and self.presharded:  # the first images of the labeled train shards
            from ..data.shards import StreamedImages, shard_urls

            import dataclasses as dc

            try:
                urls = shard_urls(self.cfg.data, "train")  # labeled, when data.root is a make_shards directory
            except UserError:
                urls = shard_urls(self.cfg.data, "pretrain")
            labeled = all(u.split("/")[-1].startswith("train-") for u in urls)
            stream = iter(StreamedImages(urls, dc.replace(self.cfg.data, num_workers=0), 0, 1, self.cfg.data.split_seed,
                                         labels=labeled))
            items = [next(stream) for _ in range(self.cfg.pretrain.monitor_samples)]
            labels = torch.stack([i["labels"] for i in items]) if all("labels" in i for i in items) else None
            self._monitor_set = ({"images": torch.stack([i["images"] for i in items])}, labels)
        if not hasattr(self, "_monitor_set"):
            try:
                split = load_images(self.cfg.data, "train")
            except UserError:  # unlabeled data
                split = None
            if split is None or split.labels is None:
                split = self.data
            g = torch.Generator().manual_seed(self.cfg.data.split_seed)
            idx = torch.randperm(len(split), generator=g)[: self.cfg.pretrain.monitor_samples].tolist()
            labels = None if split.labels is None else split.labels[idx]
            self._monitor_set = ({"images": self._images_at(split, idx)}, labels)
        return self._monitor_set

    def _images_at(self, split, idx: list[int]) -> torch.Tensor:
        """Images `idx` of `split`: indexed when it is in memory; a folder's labeled files are taken from the
        pretraining pool when that is in memory and holds them (the labeled carve is part of it); else decoded."""
        images = getattr(split.dataset, "images", None)
        if images is not None:
            return images[idx]
        pool = getattr(self.data.dataset, "images", None)
        if pool is not None and split.ids and self.data.ids:
            where = {f: i for i, f in enumerate(self.data.ids)}
            wanted = [split.ids[i] for i in idx]
            if all(w in where for w in wanted):
                return pool[[where[w] for w in wanted]]
        return torch.stack([split.dataset[i]["images"] for i in idx])

    def embed(self, model: nn.Module, inputs: dict) -> torch.Tensor:
        return model.backbone(self._in_model_memory_format(normalize(to_unit_float(inputs["images"]))))

    def export(self, model: nn.Module, path) -> None:
        save_vision_encoder(model.backbone, path, self.cfg, extra={"leakage": self.leakage})


class BackboneHead(nn.Module):
    """Backbone then projection head: the model of methods without a teacher (SimCLR, DCL, VICReg)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy for an EMA teacher (lightly's deactivate_requires_grad); updated by `update_momentum`."""
    import copy

    from lightly.models.utils import deactivate_requires_grad

    teacher = copy.deepcopy(module)
    deactivate_requires_grad(teacher)
    return teacher
