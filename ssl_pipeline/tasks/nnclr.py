"""NNCLR: SimCLR's contrastive loss, but each view's positive is the *nearest neighbour* of the other view's
projection in a support set of recent projections (Dwibedi et al. 2021, "With a Little Help from My Friends").
A neighbour is another image of (likely) the same kind, so the positives carry more than augmentation can —
the paper's largest gains over SimCLR are in the 1 % / 10 % label regime this project measures."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ._vision import VisionTask
from .registry import register

DEFAULT_SUPPORT_SIZE = 4096  # the support set with support_size=0 on large data (a tenth of the images below 40,960)


@dataclass
class NNCLRConfig:
    temperature: float = 0.1  # NT-Xent temperature (NNCLR: 0.1)
    support_size: int = 0  # projections kept for the neighbour search, from every process; 0: a tenth of the pretraining images, at most 4,096 (NNCLR: 98,304 of ImageNet's 1.28 M)
    projection_hidden_dim: int = 2048  # projection and prediction heads' hidden width (NNCLR: 2048 / 4096)
    projection_dim: int = 256  # projection output width (the space neighbours are searched and compared in)

    def __post_init__(self):
        if self.temperature <= 0:
            raise UserError(f"config key 'pretrain.nnclr.temperature' must be positive, got {self.temperature}")
        if self.support_size < 0:
            raise UserError(f"config key 'pretrain.nnclr.support_size' must be >= 0 (0 = a tenth of the images), "
                            f"got {self.support_size}")


class SupportSet:
    """NNCLR's support set: a FIFO queue of the last `size` projections of every process, and the nearest
    (cosine) neighbour of a query in it.

    Written here instead of lightly's `NNMemoryBankModule`: lightly reads the queue pointer back to the host
    (`int(bank_ptr)`, a GPU sync every step), keeps the queue out of the state dict (a resumed run would search
    random vectors) and starts from random vectors, which would be every query's "neighbour" for the first
    `size / batch` steps. Here the pointer and fill level stay on the device, the queue is saved with the
    checkpoint (`NNCLRTask.state_dict`), and a query meets only the slots already written (itself while none is).
    Every process adds the same gathered rows, so the queues stay equal and 2 processes search what 1 would.
    """

    def __init__(self, size: int, dim: int, device: torch.device | str = "cpu"):
        self.size = size
        self.bank = torch.zeros(size, dim, device=device)
        self.filled = torch.zeros((), dtype=torch.long, device=device)  # slots written so far (at most size)
        self.pointer = torch.zeros((), dtype=torch.long, device=device)  # next slot to write

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(n, d) queries -> (n, d) their nearest neighbours among the written slots (the queries while none is)."""
        similarity = nn.functional.normalize(z, dim=1) @ nn.functional.normalize(self.bank, dim=1).T
        unwritten = torch.arange(self.size, device=z.device) >= self.filled
        neighbours = self.bank[similarity.masked_fill(unwritten, float("-inf")).argmax(dim=1)]
        return torch.where(self.filled > 0, neighbours, z)

    @torch.no_grad()
    def add(self, rows: torch.Tensor) -> None:
        """Writes `rows` (the global batch's, in process order) over the oldest slots."""
        n = len(rows)
        if n > self.size:  # the queue keeps only the newest `size` rows
            rows, n = rows[-self.size:], self.size
        slots = (self.pointer + torch.arange(n, device=rows.device)) % self.size
        self.bank.index_copy_(0, slots, rows.to(self.bank.dtype))
        self.pointer = (self.pointer + n) % self.size
        self.filled = torch.clamp(self.filled + n, max=self.size)

    def state_dict(self) -> dict:
        return {"bank": self.bank.cpu(), "filled": self.filled.cpu(), "pointer": self.pointer.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if state["bank"].shape != self.bank.shape:
            raise UserError(f"the checkpoint's NNCLR support set is {tuple(state['bank'].shape)}, this run's "
                            f"{tuple(self.bank.shape)}: resume with the same pretrain.nnclr.support_size and "
                            "projection_dim, or start a new output_dir")
        device = self.bank.device
        self.bank, self.filled, self.pointer = (state[k].to(device) for k in ("bank", "filled", "pointer"))


class NNCLRLoss(nn.Module):
    """Symmetric NT-Xent between one view's nearest neighbour and the other view's prediction (negatives gathered
    from every process by lightly's NTXentLoss); then the first view's projections join the support set."""

    def __init__(self, temperature: float, support: SupportSet, gather_distributed: bool = False):
        from lightly.loss import NTXentLoss

        super().__init__()
        self.support, self.gather_distributed = support, gather_distributed
        self.contrastive = NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
        from lightly.utils import dist

        n0, n1 = self.support.nearest(z0.detach()), self.support.nearest(z1.detach())
        loss = 0.5 * (self.contrastive(n0, p1) + self.contrastive(n1, p0))
        rows = z0.detach()
        if self.gather_distributed and dist.world_size() > 1:
            rows = torch.cat(dist.gather(rows))
        self.support.add(rows)
        return loss


class NNCLRModel(nn.Module):
    """Backbone, projection head and prediction head (lightly's NNCLR heads)."""

    def __init__(self, backbone: nn.Module, embedding_dim: int, s: NNCLRConfig):
        from lightly.models.modules import NNCLRPredictionHead, NNCLRProjectionHead

        super().__init__()
        self.backbone = backbone
        self.projection = NNCLRProjectionHead(embedding_dim, s.projection_hidden_dim, s.projection_dim)
        self.prediction = NNCLRPredictionHead(s.projection_dim, s.projection_hidden_dim, s.projection_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (projections, predictions) of the stacked views."""
        z = self.projection(self.backbone(x))
        return z, self.prediction(z)


@register("nnclr", config=NNCLRConfig)
class NNCLRTask(VisionTask):
    """NNCLR: nearest-neighbour positives from a support set shared by all processes, saved with checkpoints."""

    def __init__(self, cfg: Config, accelerator):
        super().__init__(cfg, accelerator)
        s = cfg.pretrain.nnclr
        self.finish_model(NNCLRModel(self.backbone, self.embedding_dim, s))
        self.support = SupportSet(self._support_size(s.support_size, accelerator), s.projection_dim, accelerator.device)
        self.criterion = NNCLRLoss(s.temperature, self.support, gather_distributed=accelerator.num_processes > 1)

    def _support_size(self, wanted: int, accelerator) -> int:
        """`wanted`, or with 0 a tenth of the pretraining images, at most 4,096 (NNCLR's ImageNet set: 7.7 %). A set
        holding much of the data keeps each image's own projection from its previous pass — its nearest
        "neighbour", so the positive would be the image again, not another one of its kind: a line says so when
        the configured size is that large."""
        n = None if self.presharded else len(self.data)
        if wanted == 0:
            return DEFAULT_SUPPORT_SIZE if n is None else max(1, min(DEFAULT_SUPPORT_SIZE, n // 10))
        if n is not None and wanted > n // 10:
            accelerator.print(f"NNCLR support set: pretrain.nnclr.support_size={wanted} is {100 * wanted / n:.0f} % of the "
                              f"{n} pretraining images; an image's own last projection is then often its "
                              "'neighbour' (0: a tenth of the images)")
        return wanted

    def loss(self, model: nn.Module, batch: dict, accelerator) -> tuple[torch.Tensor, dict]:
        with accelerator.autocast():
            z, p = model(batch["views"])
        z0, z1 = z.float().chunk(2)
        p0, p1 = p.float().chunk(2)
        return self.criterion(z0, z1, p0, p1), {}

    def state_dict(self) -> dict:
        return {"nnclr_support": self.support.state_dict()}

    def load_state_dict(self, state: dict, batches_done) -> None:
        if "nnclr_support" in state:
            self.support.load_state_dict(state["nnclr_support"])
