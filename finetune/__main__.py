"""`python -m finetune` / `accelerate launch finetune --config FILE [key=value ...]`."""
from ssl_pipeline.cli import finetune_main

if __name__ == "__main__":
    finetune_main()
