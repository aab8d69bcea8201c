"""Run under N processes: the distillation teacher's logits over a 37-example pool (not a multiple of the process
count), gathered in pool order; written to argv[1] by the main process."""
import sys

import torch
from accelerate import Accelerator
from torch import nn

from ssl_pipeline.finetune.methods import Classifier, Features, FeatureSet, logits_of

acc = Accelerator(cpu=not torch.cuda.is_available())
torch.manual_seed(0)
model = Classifier(Features(torch.zeros(6), torch.ones(6)), nn.Linear(6, 3), ("features",))  # the identity
g = torch.Generator().manual_seed(1)
pool = FeatureSet(torch.randn(37, 6, generator=g), torch.zeros(37, dtype=torch.long))
logits = logits_of(model, pool, acc, batch_size=4)
if acc.is_main_process:
    torch.save({"logits": logits, "expected": model.head(pool.features).detach()}, sys.argv[1])
acc.wait_for_everyone()
torch.distributed.destroy_process_group()
