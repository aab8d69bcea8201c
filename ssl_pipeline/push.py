"""Share an exported encoder on the Hugging Face Hub with a model card that says how it was made and what it is
worth in labels:

    python -m ssl_pipeline.push ENCODER_DIR REPO_ID [--private] [--dry-run]

The card (`README.md` in ENCODER_DIR) is generated from the encoder's `ssl_encoder.json`, the run's `config.json`
and `pretrain_done.json` (pretraining data and budget) and, when the run was fine-tuned, its label-efficiency
table and plot (copied beside the weights so they travel with them). `--dry-run` writes the card and pushes
nothing. The push itself is `huggingface_hub`'s create_repo + upload_folder (token: `huggingface-cli login` or
HF_TOKEN).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .errors import UserError, exit_on_user_error
from .spec import spec_if_exported

CARD = "README.md"


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def model_card(encoder_dir: Path, repo_id: str) -> str:
    spec = spec_if_exported(encoder_dir)
    if spec is None:
        raise UserError(f"{encoder_dir} is not an encoder exported by ssl_pipeline (no ssl_encoder.json)")
    run = encoder_dir.parent
    cfg, done = _read_json(run / "config.json") or {}, _read_json(run / "pretrain_done.json") or {}
    report = _read_json(run / "label_efficiency.json")
    vision = spec["modality"] == "vision"
    pretext = spec.get("pretext", "ssl")
    data = cfg.get("data", {})
    data_name = data.get("name") or (f"{data.get('source')} files" if data.get("files") else data.get("source", "?"))
    p = cfg.get("pretrain", {})
    front = ["---", f"library_name: {'timm' if vision else 'transformers'}",
             f"pipeline_tag: {'image-feature-extraction' if vision else 'feature-extraction'}",
             "tags:", "- self-supervised-learning", f"- {pretext}", "- ssl_pipeline", "---", ""]
    arch = spec.get("timm_name") if vision else spec.get("architecture")
    passes = (spec.get("pretraining") or {}).get("epochs")  # what was trained: pretrain.min_steps may exceed the epochs
    lines = front + [f"# {repo_id.split('/')[-1]}", "",
                     f"A {arch} encoder pretrained with **{pretext}** (self-supervised, no labels) by "
                     "ssl_pipeline — embeddings of dimension "
                     f"{spec.get('embedding_dim')}.", "", "## Pretraining", "",
                     f"- data: {data_name} (`data.source={data.get('source')}`)",
                     f"- budget: {done.get('step', '?')} optimizer steps"
                     + (f" ({passes:g} passes over the data)" if passes else
                        f" ({p.get('epochs')} epochs)" if p.get("epochs") and not p.get("max_steps") else "")
                     + f", batch {p.get('batch_size', '?')} per process, base learning rate "
                       f"{p.get('learning_rate', '?')} ({p.get('optimizer', '?')}), mixed precision "
                       f"{(spec.get('pretraining') or {}).get('mixed_precision') or p.get('mixed_precision') or 'as launched'}",
                     f"- started from: {spec.get('init_from') or 'random weights'}"]
    if spec.get("pretraining"):
        from .pretraining_record import describe

        lines.append(f"- what it reached: {describe(spec['pretraining'])}")
    if vision:
        lines.append(f"- input: {spec.get('channels')}-channel {spec.get('image_size')}×{spec.get('image_size')} "
                     f"images; {spec.get('input')}")
    leak = spec.get("leakage")
    if leak and leak.get("checked"):
        lines.append(f"- overlap with the test split: {leak['test_examples_with_exact_duplicates']} exact and "
                     f"{leak['test_examples_with_near_duplicates']} near duplicates"
                     + (f", {leak['dropped_from_pretraining']} dropped from pretraining"
                        if leak.get("dropped_from_pretraining") else ""))
    lines += ["", "## Label efficiency", ""]
    if report:
        md = (run / "label_efficiency.md").read_text() if (run / "label_efficiency.md").is_file() else ""
        body = md.split("\n", 2)[2] if md.startswith("###") else md
        lines += [f"Measured on {report.get('data')} ({report.get('evaluated_on', 'test')} split) by "
                  "`ssl_pipeline finetune`:", "", body.strip(), ""]
        if (run / "label_efficiency.png").is_file():
            lines += ["![label efficiency](label_efficiency.png)", ""]
    else:
        lines += ["Not measured: the run that made this encoder has no label-efficiency report.", ""]
    lines += ["## Use", "", "```python"]
    if vision:
        lines += ["import json, timm", "import ssl_pipeline  # registers ssl_pipeline's small backbones (ssl_cnn6 …)",
                  "from huggingface_hub import snapshot_download",
                  f"path = snapshot_download('{repo_id}')",
                  "enc = ssl_pipeline.load_encoder(path)   # float images in [0, 1] -> (B, D)",
                  "# or plain timm: timm.create_model(spec['timm_name'], **spec['timm_kwargs']) + model.safetensors"]
    else:
        lines += ["from transformers import AutoModel, AutoTokenizer",
                  f"tok = AutoTokenizer.from_pretrained('{repo_id}')",
                  f"model = AutoModel.from_pretrained('{repo_id}')   # mean-pool last_hidden_state over the mask"]
    lines += ["```", ""]
    return "\n".join(lines)


def write_card(encoder_dir: Path, repo_id: str) -> Path:
    from .atomic import write_text

    card = model_card(encoder_dir, repo_id)
    plot = encoder_dir.parent / "label_efficiency.png"
    if "label_efficiency.png" in card and plot.is_file():
        shutil.copyfile(plot, encoder_dir / "label_efficiency.png")
    write_text(encoder_dir / CARD, card)
    return encoder_dir / CARD


def push(encoder_dir: Path, repo_id: str, private: bool = False) -> str:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(encoder_dir), repo_id=repo_id,
                             commit_message="ssl_pipeline: encoder and model card")
    return str(getattr(info, "commit_url", info))


@exit_on_user_error
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ssl_pipeline.push", description=__doc__.split("\n\n")[0])
    ap.add_argument("encoder_dir")
    ap.add_argument("repo_id")
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="write the model card, push nothing")
    args = ap.parse_args(argv)
    encoder_dir = Path(args.encoder_dir)
    if not encoder_dir.is_dir():
        raise UserError(f"{encoder_dir} is not a directory")
    card = write_card(encoder_dir, args.repo_id)
    print(f"model card: {card}")
    if args.dry_run:
        print("dry run: nothing pushed")
        return
    try:
        url = push(encoder_dir, args.repo_id, args.private)
    except Exception as err:  # network, auth, permissions: one line, the card stays written
        raise UserError(f"push to {args.repo_id} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    print(f"pushed: {url}")


if __name__ == "__main__":
    main(sys.argv[1:])
