# Quickstart: `make demo` (pretrain -> finetune -> label-efficiency report) and `make test`.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup test test-slow demo bench docs clean gpu-wheels gpu-rehearsal
setup: $(STAMP)

# Re-installs only when pyproject.toml changes; torch/torchvision come from the registry (CPU or CUDA build).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# pytest-xdist: test files spread over TEST_WORKERS processes (one file per worker keeps module fixtures single).
# Most of the suite's time is subprocess start-up and 2-process gloo runs, so 2 workers on 2 cores cut it by ~30 %.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-slow: setup
	$(PY) -m pytest -q -m slow

demo: setup
	$(PY) -m ssl_pipeline.demo

bench: setup
	$(PY) benchmarks/vision_throughput.py
	$(PY) benchmarks/text_throughput.py
	$(PY) benchmarks/finetune_throughput.py
	$(PY) benchmarks/streaming_memory.py
	$(PY) benchmarks/folder_index.py
	$(PY) benchmarks/shard_stream.py

# The GPU check (benchmarks/gpu_check.sh) runs where no registry is reachable and the image holds only the packages
# below: gpu-wheels resolves the rest against a virtualenv with just those (.gpu-image/) and downloads them to
# benchmarks/wheels/ (git-ignored, <= 64 MiB, travels with the tree); gpu-rehearsal runs the check on that
# virtualenv's CPU at toy sizes, installing from the wheel folder exactly as the GPU machine will.
GPU_IMAGE_PACKAGES := torch torchvision timm transformers tokenizers accelerate pyarrow pandas
gpu-wheels:
	test -x .gpu-image/bin/python || python3 -m venv .gpu-image
	.gpu-image/bin/python -m pip install --quiet $(GPU_IMAGE_PACKAGES)
	.gpu-image/bin/python benchmarks/gpu_wheels.py

gpu-rehearsal: gpu-wheels
	PYTHON=.gpu-image/bin/python bash benchmarks/gpu_check.sh --rehearse; status=$$?; \
	.gpu-image/bin/python -m pip uninstall --quiet -y ssl_pipeline $$(ls benchmarks/wheels | cut -d- -f1); \
	exit $$status  # the image stays as the GPU machine has it, for the next gpu-wheels

docs: setup
	$(PY) -m ssl_pipeline.docs

clean:
	rm -rf runs/demo
