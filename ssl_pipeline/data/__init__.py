"""Data sources: images (embedded, torchvision, folders, hub) and text corpora (files, hub, streaming)."""
