"""Run under `accelerate launch`: several runs of the stages one after another in the same processes — for each
entry ["pretrain" | "finetune", *ARGS] of the JSON list at argv[1], a line starting with argv[2] (where the run's
output begins), then what `accelerate launch -m STAGE ARGS` does, with torch, timm and the rest imported once. Tests
use it (conftest.run_stages): on 2 CPU cores a 2-process launch spends ~15-30 s starting before its first step."""
import json
import os
import sys

from accelerate.state import AcceleratorState, PartialState

from ssl_pipeline.cli import finetune_main, pretrain_main

# A run ends with Accelerator.end_training(), which destroys the process group; setting it up again under the same
# launcher hangs (the launcher's store keeps the first rendezvous). The group is kept for the next run instead,
# and destroyed once, at the end.
keep, AcceleratorState.destroy_process_group = AcceleratorState.destroy_process_group, lambda self, group=None: None
MAINS = {"pretrain": pretrain_main, "finetune": finetune_main}
for stage, *args in json.loads(open(sys.argv[1]).read()):
    if os.environ.get("RANK", "0") == "0":
        print(f"{sys.argv[2]}{stage} {' '.join(args)}", flush=True)
    MAINS[stage](args)
PartialState().wait_for_everyone()
keep(AcceleratorState())
