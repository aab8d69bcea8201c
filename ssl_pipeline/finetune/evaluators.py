"""The rows a label-efficiency report can have, declared once: name, role, whether they run by default, and the
protocol that scores them. The config's default and validation, the grid and the report's order all read this.

Declarations only (no heavy imports): the config schema imports it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evaluator:
    name: str
    role: str  # "ssl": scores the pretrained encoder; "baseline": what the user would otherwise use; "combined":
    #            the encoder together with a baseline, compared with that baseline alone (never headlined as SSL)
    protocol: str  # finetune | linear_probe | knn | supervised | classic | probe_classic (see runner.run_cell)
    default: bool = True  # in finetune.methods unless the user lists them
    needs_base: bool = False  # scores the starting checkpoint (finetune.base_encoder / model.init_from)
    derived: bool = False  # written by another row's cell (its int8 copy), not requested in finetune.methods
    embeddings: str = ""  # frozen: scores frozen train/test embeddings; probe_head: needs them only for the linear
    #                       probe its head starts from (finetune.head_init=probe); "": never
    settings: str = ""  # its own config section (finetune.<settings>): stamped on each of its rows, checked on resume
    settings_modality: str = ""  # the section applies to this modality's rows only ("": both)
    about: str = ""


EVALUATORS = (  # report order
    Evaluator("finetune", "ssl", "finetune", embeddings="probe_head",
              about="end to end, the head starting from the converged probe (LP-FT)"),
    Evaluator("linear_probe", "ssl", "linear_probe", embeddings="frozen",
              about="logistic regression on frozen, standardised embeddings"),
    Evaluator("knn", "ssl", "knn", embeddings="frozen", about="cosine kNN on frozen embeddings"),
    Evaluator("distill", "ssl", "distill", default=False, embeddings="probe_head",
              about="SimCLRv2's step 3: the fine-tuned model soft-labels the unlabeled train pool; a student of the "
                    "same architecture (from the SSL encoder) learns from them + the labeled subset"),
    Evaluator("distill_small", "ssl", "distill_small", default=False, embeddings="probe_head",
              about="the same with a smaller student (finetune.student: from scratch, or a smaller exported encoder)"),
    Evaluator("distill_int8", "ssl", "distill", default=False, derived=True,
              about="the distill student, int8-quantized (finetune.quantize=int8)"),
    Evaluator("distill_small_int8", "ssl", "distill_small", default=False, derived=True,
              about="the distill_small student, int8-quantized (finetune.quantize=int8)"),
    Evaluator("fixmatch", "ssl", "fixmatch", default=False, embeddings="probe_head", settings="fixmatch",
              about="FixMatch on the SSL encoder: the labeled subset plus the unlabeled train pool, each pool example "
                    "teaching its own strong view the label the model gives its weak view when confident"),
    Evaluator("base_finetune", "baseline", "finetune", default=False, needs_base=True, embeddings="probe_head",
              about="finetune on the starting checkpoint, without the SSL stage"),
    Evaluator("base_probe", "baseline", "linear_probe", default=False, needs_base=True, embeddings="frozen",
              about="linear_probe on the starting checkpoint, without the SSL stage"),
    Evaluator("supervised", "baseline", "supervised", about="the same architecture from random weights"),
    Evaluator("classic", "baseline", "classic", settings="classic", settings_modality="text",
              about="scikit-learn logistic regression on pixels / TF-IDF of words and character n-grams"),
    Evaluator("probe_classic", "combined", "probe_classic", embeddings="frozen", settings="classic",
              settings_modality="text",
              about="linear_probe and classic together (their log-probabilities, weighted by cross-validation on "
                    "the subset): what the encoder adds to the baseline the user would otherwise use, compared with "
                    "classic alone"),
)
BY_NAME = {e.name: e for e in EVALUATORS}
ORDER = tuple(e.name for e in EVALUATORS)
SSL_METHODS = tuple(e.name for e in EVALUATORS if e.role == "ssl")
BASELINES = tuple(e.name for e in EVALUATORS if e.role == "baseline")
# combined row -> (the baseline it is compared with, the SSL row it combines it with)
COMBINED = {e.name: ("classic", "linear_probe") for e in EVALUATORS if e.role == "combined"}
BASE_METHODS = tuple(e.name for e in EVALUATORS if e.needs_base)
DEFAULT_METHODS = tuple(e.name for e in EVALUATORS if e.default)
DISTILL_METHODS = ("distill", "distill_small")
REQUESTABLE = tuple(e.name for e in EVALUATORS if not e.derived)
