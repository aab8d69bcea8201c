"""`python -m pretrain` / `accelerate launch pretrain --config FILE [key=value ...]`."""
from ssl_pipeline.cli import pretrain_main

if __name__ == "__main__":
    pretrain_main()
