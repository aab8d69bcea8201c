# Quickstart: `make demo` (pretrain -> finetune -> label-efficiency report) and `make test`.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup test test-slow demo bench docs clean
setup: $(STAMP)

# Re-installs only when pyproject.toml changes; torch/torchvision come from the registry (CPU or CUDA build).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

demo: setup
	$(PY) -m ssl_pipeline.demo

bench: setup
	$(PY) benchmarks/vision_throughput.py
	$(PY) benchmarks/text_throughput.py
	$(PY) benchmarks/streaming_memory.py
	$(PY) benchmarks/folder_index.py

docs: setup
	$(PY) -m ssl_pipeline.docs

clean:
	rm -rf runs/demo
