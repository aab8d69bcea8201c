"""Run under `accelerate launch`: several pretraining runs one after another in the same processes — what
`accelerate launch -m pretrain ARGS` does for each ARGS in the JSON list at argv[1], with torch, timm and the rest
imported once. Tests use it: on 2 CPU cores a 2-process launch spends ~15-30 s starting before its first step."""
import json
import sys

from accelerate.state import AcceleratorState, PartialState

from ssl_pipeline.cli import pretrain_main

# A run ends with Accelerator.end_training(), which destroys the process group; setting it up again under the same
# launcher hangs (the launcher's store keeps the first rendezvous). The group is kept for the next run instead,
# and destroyed once, at the end.
keep, AcceleratorState.destroy_process_group = AcceleratorState.destroy_process_group, lambda self, group=None: None
for args in json.loads(open(sys.argv[1]).read()):
    pretrain_main(args)
PartialState().wait_for_everyone()
keep(AcceleratorState())
