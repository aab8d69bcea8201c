"""Text encoders: a BERT-style `transformers` model built from config (SDPA attention), trained from scratch."""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..config import ModelConfig
from ..errors import UserError

# Google's BERT miniatures naming (Turc et al., 2019): hidden, layers, heads, intermediate
SIZE_PRESETS = {
    "tiny": (128, 2, 2, 512),
    "mini": (256, 4, 4, 1024),
    "small": (512, 4, 8, 2048),
    "medium": (512, 8, 8, 2048),
    "base": (768, 12, 12, 3072),
}


# model.architecture -> (transformers config class, masked-LM class); both load with the Auto* classes
ARCHITECTURES = {
    # original BERT: LayerNorm after each residual block (post-LN)
    "bert": ("BertConfig", "BertForMaskedLM"),
    # the same encoder with LayerNorm before each block (pre-LN, Xiong et al., 2020): trains from scratch
    # stably at higher learning rates, which is what a short CPU budget needs
    "prelayernorm": ("RobertaPreLayerNormConfig", "RobertaPreLayerNormForMaskedLM"),
}


def attention_backend(device: torch.device):
    """On CPU, SDPA's math path (batched matmuls + softmax) trains faster than its fused flash kernel, whose
    backward is slow there (profiled: a 4-layer, length-128 bf16 step took 4.7 s of CPU with the math path vs
    5.9 s fused); on GPUs the fused kernels win, so they stay in charge."""
    return sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else nullcontext()


def resolved_sizes(cfg: ModelConfig) -> tuple[int, int, int, int]:
    """(hidden, layers, heads, feed-forward) of `cfg`: the `model.size` preset when one is named, else its keys."""
    if cfg.size is None:
        return cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size
    if cfg.size not in SIZE_PRESETS:
        raise UserError(f"model.size '{cfg.size}' is not one of {list(SIZE_PRESETS)}")
    return SIZE_PRESETS[cfg.size]


def encoder_config(cfg: ModelConfig, vocab_size: int, max_length: int, pad_id: int):
    import transformers

    hidden, layers, heads, inter = resolved_sizes(cfg)
    if hidden % heads:
        raise UserError(f"model.hidden_size={hidden} must be divisible by model.num_heads={heads}")
    config_cls = getattr(transformers, ARCHITECTURES[cfg.architecture][0])
    # RoBERTa-style models number positions from pad_id + 1, hence the extra room
    return config_cls(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=inter, max_position_embeddings=max(512, max_length) + pad_id + 2,
                      hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.attention_dropout, pad_token_id=pad_id,
                      attn_implementation="sdpa")


def masked_lm(cfg: ModelConfig, vocab_size: int, max_length: int, pad_id: int) -> "MaskedLM":
    import transformers

    config = encoder_config(cfg, vocab_size, max_length, pad_id)
    return MaskedLM(getattr(transformers, ARCHITECTURES[cfg.architecture][1])(config))


class MaskedLM(nn.Module):
    """A transformers masked-LM model whose prediction head runs only at the given (masked) positions.

    One forward through this module (not through its submodules) keeps DDP's gradient hooks in charge.
    Padding-free batches (packed blocks) come without an attention mask (the data decides that on the host), so
    SDPA takes its unmasked fast path without a device sync in the forward.
    """

    def __init__(self, mlm):
        super().__init__()
        self.mlm = mlm
        # BERT's vs RoBERTa's head attribute; other layouts would need their own head call
        self.head_name = next((h for h in ("cls", "lm_head") if hasattr(mlm, h)), None)
        if self.head_name is None or not hasattr(mlm, "base_model"):
            raise UserError(f"{type(mlm).__name__} has no BERT- or RoBERTa-style masked-LM head (cls / lm_head); "
                            "supported for continued pretraining: BERT, RoBERTa, XLM-R, RoBERTa-PreLN and relatives")

    def forward(self, input_ids, attention_mask, positions):
        """-> head logits at `positions` (flat indices into the (batch x length) tokens); mask None = no padding."""
        with attention_backend(input_ids.device):
            hidden = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return getattr(self.mlm, self.head_name)(hidden.flatten(0, 1)[positions])


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class TextEncoder(nn.Module):
    """Tokenized batch (input_ids, attention_mask) -> one embedding per text (mean over real tokens)."""

    def __init__(self, model, tokenizer, spec: dict):
        super().__init__()
        self.model, self.tokenizer, self.spec = model, tokenizer, spec
        self.embedding_dim = model.config.hidden_size
        self.max_length = spec.get("max_length", 128)

    @classmethod
    def from_pretrained(cls, path, spec: dict) -> "TextEncoder":
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # the MLM checkpoint has no pooler and an MLM head the bare encoder does not use: transformers reports both
        # in a load table that says nothing wrong here, so it is silenced for this load only
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            model = AutoModel.from_pretrained(str(path), attn_implementation="sdpa", add_pooling_layer=False)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        return cls(model, AutoTokenizer.from_pretrained(str(path)), spec)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with attention_backend(input_ids.device):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def tokenize(self, texts: list[str]) -> dict:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        device = next(self.parameters()).device
        out = []
        for i in range(0, len(texts), batch_size):
            batch = {k: v.to(device) for k, v in self.tokenize(texts[i:i + batch_size]).items()}
            out.append(self(batch["input_ids"], batch["attention_mask"]).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.embedding_dim)


def base_encoder(cfg: ModelConfig, vocab_size: int, max_length: int, pad_id: int):
    """The bare encoder (no head, no pooler) of `model.architecture`: what ELECTRA's discriminator is, and what
    `AutoModel` loads back from its export."""
    import transformers

    config = encoder_config(cfg, vocab_size, max_length, pad_id)
    model_cls = getattr(transformers, ARCHITECTURES[cfg.architecture][1].replace("ForMaskedLM", "Model"))
    return model_cls(config, add_pooling_layer=False)


def scaled_model_config(cfg: ModelConfig, width: float) -> ModelConfig:
    """`cfg` with its width (hidden, heads, feed-forward) scaled by `width`, depth kept: ELECTRA's generator."""
    import dataclasses

    hidden, layers, heads, inter = resolved_sizes(cfg)
    heads_g = max(1, round(heads * width))
    head_dim = max(16, round(hidden * width / heads_g))
    return dataclasses.replace(cfg, size=None, hidden_size=heads_g * head_dim, num_layers=layers, num_heads=heads_g,
                               intermediate_size=max(4, round(inter * width)))


class SharedEmbeddingGenerator(nn.Module):
    """ELECTRA's small generator reading and predicting through the discriminator's token embeddings (Clark et al.
    2020, section 3.2). The generator's softmax over the vocabulary updates every token's embedding at every step,
    while the detection loss alone only reaches the tokens present in the batch (the paper: GLUE 83.6 untied, 84.3
    with tied token embeddings).

    `body` is a bare encoder of the generator's width; its own token table is dropped: tokens enter through the
    shared table and a projection to the generator's width (ELECTRA's `embeddings_project`), and leave through
    transformers' `ElectraGeneratorPredictions` (back to the table's width) and the shared table, transposed."""

    def __init__(self, body: nn.Module, embeddings: nn.Embedding):
        from transformers import ElectraConfig
        from transformers.models.electra.modeling_electra import ElectraGeneratorPredictions

        super().__init__()
        body.embeddings.word_embeddings = None  # tokens enter as `inputs_embeds` from the shared table
        width, dim, std = body.config.hidden_size, embeddings.embedding_dim, body.config.initializer_range
        self.body, self.embeddings = body, embeddings
        self.project_in = nn.Linear(dim, width)
        self.predictions = ElectraGeneratorPredictions(
            ElectraConfig(hidden_size=width, embedding_size=dim, layer_norm_eps=body.config.layer_norm_eps))
        self.bias = nn.Parameter(torch.zeros(embeddings.num_embeddings))
        for linear in (self.project_in, self.predictions.dense):  # transformers' own initialisation of its layers
            nn.init.normal_(linear.weight, std=std)
            nn.init.zeros_(linear.bias)

    def forward(self, input_ids, attention_mask, positions):
        """-> vocabulary logits at `positions` (flat indices into the (batch x length) tokens), like `MaskedLM`."""
        with attention_backend(input_ids.device):
            hidden = self.body(inputs_embeds=self.project_in(self.embeddings(input_ids)),
                               attention_mask=attention_mask).last_hidden_state
        out = self.predictions(hidden.flatten(0, 1)[positions])
        return nn.functional.linear(out, self.embeddings.weight, self.bias)


class ReplacedTokenDetection(nn.Module):
    """ELECTRA (Clark et al. 2020) as one module, so DDP sees one forward per step: a small masked-LM generator
    fills the masked positions with sampled tokens, and the discriminator (the encoder that is exported) tells, at
    every position, whether the token is the original or a replacement. The discriminator head is transformers'
    own `ElectraDiscriminatorPredictions`; both networks use `model.architecture`."""

    def __init__(self, generator: MaskedLM | SharedEmbeddingGenerator, discriminator: nn.Module):
        from transformers.models.electra.modeling_electra import ElectraDiscriminatorPredictions

        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.head = ElectraDiscriminatorPredictions(discriminator.config)

    def forward(self, masked_ids, attention_mask, positions, labels, original_ids):
        """-> (generator logits at `positions`, discriminator logits (B, L), replaced (B, L) bool).

        `positions`/`labels` as from `bucketed_positions` (padding entries have label IGNORE)."""
        from ..masking import IGNORE

        gen_logits = self.generator(masked_ids, attention_mask, positions)
        with torch.no_grad():  # sampling is not differentiated (ELECTRA trains the generator by MLM only)
            sampled = torch.multinomial(torch.softmax(gen_logits.detach().float(), -1), 1).squeeze(1)
            real = labels != IGNORE
            corrupted = original_ids.flatten().clone()
            corrupted[positions[real]] = sampled[real]
            corrupted = corrupted.view_as(original_ids)
            replaced = corrupted != original_ids
        with attention_backend(original_ids.device):
            hidden = self.discriminator(input_ids=corrupted, attention_mask=attention_mask).last_hidden_state
        return gen_logits, self.head(hidden), replaced
