"""`python -m ssl_pipeline.data.make_shards FOLDER OUT [--shard-size N]`: an image folder written as webdataset tar
shards — the command README and the help line give (the work is data/shards.py's; this module is its name)."""
import sys

from .shards import main

if __name__ == "__main__":
    main(sys.argv[1:])
