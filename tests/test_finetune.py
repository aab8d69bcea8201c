"""Fine-tune stage end to end (vision on digits, text on the embedded corpus) and the methods' guarantees."""
import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SMALL_TEXT_MODEL, run_stage
from ssl_pipeline.cli import pretrain_main
from ssl_pipeline.config import load_config
from ssl_pipeline.export import read_spec
from ssl_pipeline.finetune import methods as M
from ssl_pipeline.finetune.labeled import labeled_data
from ssl_pipeline.finetune.report import label_multiplier, summarize
from ssl_pipeline.pretraining_record import on_plateau
from ssl_pipeline.engine import make_accelerator

FT_FAST = ["finetune.label_fractions=[0.05,1.0]", "finetune.seeds=[0,1]", "finetune.min_steps=4",
           "finetune.max_steps=8", "finetune.epochs=1"]


def _check_outputs(out, task, n_methods):
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert doc["task"] == task and doc["metric"] == "accuracy" and doc["encoder"]
    assert len(doc["rows"]) == n_methods * 2 * 2
    for r in doc["rows"]:
        assert set(r) >= {"method", "label_fraction", "n_labels", "seed", "accuracy", "seconds"}
        assert 0.0 <= r["accuracy"] <= 1.0 and r["seconds"] >= 0
    assert doc["summary"] and all("mean" in s and "std" in s and "seconds" in s for s in doc["summary"])
    # what each row costs, beside what it gains: the probe fits in seconds, a trained row takes longer
    timed = {(s["method"], s["label_fraction"]): s["seconds"] for s in doc["summary"]}
    assert timed[("finetune", 1.0)] > timed[("knn", 1.0)]
    with open(out / "label_efficiency.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(doc["rows"])
    with Image.open(out / "label_efficiency.png") as img:
        img.verify()
        assert img.format == "PNG"
    md = (out / "label_efficiency.md").read_text()
    assert "| method |" in md and "supervised" in md and "Wall-clock time per cell" in md
    return doc


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ftv") / "run"
    pretrain_main(["--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}", "pretrain.max_steps=6",
                   "pretrain.batch_size=64", "model.projection_hidden_dim=64"])
    return out


def test_text_pretrain_then_finetune(tmp_path):
    out = tmp_path / "t"
    pretrain_main(["--config", "configs/text/mlm_embedded.yaml", f"output_dir={out}", "pretrain.max_steps=5",
                   "model.vocab_size=1000", *SMALL_TEXT_MODEL])  # in-process (the CLI's own run is the fine-tune below)
    run_stage("finetune", ["--config", "configs/text/mlm_embedded.yaml", f"output_dir={out}", *SMALL_TEXT_MODEL,
                           *FT_FAST])
    doc = _check_outputs(out, "mlm", 6)
    # the default rows include the encoder together with TF-IDF, compared with TF-IDF alone at every budget
    assert [(g["method"], g["baseline"]) for g in doc["gain_of_combined"]] == [("probe_classic", "classic")] * 2
    # the encoder carries what its pretraining did, and the report repeats it
    record = json.loads((out / "encoder" / "ssl_encoder.json").read_text())["pretraining"]
    assert record["steps"] == 5 and record["unit"] == "packed token blocks" and record["examples"] > 0
    assert 0 < record["final"]["eval_token_frequency_loss"] < math.log(1000)
    assert on_plateau(record)  # 5 steps cannot take an MLM half a nat below knowing token frequencies
    assert doc["pretraining"] == record and "Encoder: pretrained for 5 steps" in (out / "label_efficiency.md").read_text()


def test_supervised_is_random_init_and_probe_keeps_encoder(vision_run):
    cfg = load_config("configs/vision/simclr_digits.yaml", [f"output_dir={vision_run}", "finetune.min_steps=3",
                                                            "finetune.max_steps=3"])
    enc_path = vision_run / "encoder"
    data = labeled_data(cfg, read_spec(enc_path), enc_path)
    pre = data.encoder(pretrained=True, path=enc_path)
    scratch = data.encoder(pretrained=False, path=enc_path)
    p_pre = dict(pre.named_parameters())
    differs = [not torch.equal(p, p_pre[n]) for n, p in scratch.named_parameters()]
    assert all(differs[:3]) and sum(differs) > 0.9 * len(differs)

    acc = make_accelerator(cfg)
    feats = M.embed(pre, data.dataset("train", np.arange(len(data.train_labels))), data.input_keys, acc, 256)
    before = {n: p.clone() for n, p in pre.state_dict().items()}
    preds = M.mlp_probe(feats[:100], data.train_labels[:100], feats[:20], 10, cfg.finetune, acc, 0)
    after = pre.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)  # encoder untouched (and its BN stats too)
    assert preds.shape == (20,)


def test_texts_embed_shortest_first_and_come_back_in_row_order():
    """Batches of texts alike in length are cut to that length (one long text no longer widens a whole batch);
    the embeddings still line up with the rows they belong to."""
    from accelerate import Accelerator

    from ssl_pipeline.finetune.labeled import SubsetView, TokenizedTexts

    lengths = [9, 1, 8, 2, 7, 1]
    mask = torch.zeros(len(lengths), 9, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = torch.arange(len(lengths))[:, None] * mask  # each row's own id on its tokens
    widths = []

    def encoder(input_ids, attention_mask):  # a stand-in: the row id back, and the batch width it saw
        widths.append(input_ids.shape[1])
        return input_ids.max(1).values[:, None].float()

    encoder.to = lambda device: encoder
    encoder.eval = lambda: encoder
    rows = np.array([5, 0, 3, 2, 1, 4])  # lengths 1, 9, 2, 8, 1, 7
    out = M.embed(encoder, SubsetView(TokenizedTexts(ids, mask, torch.zeros(len(lengths))), rows),
                  ("input_ids", "attention_mask"), Accelerator(cpu=True), batch_size=2)
    assert out[:, 0].tolist() == rows.tolist()
    assert widths == [1, 7, 9]  # lengths 1, 1 | 2, 7 | 8, 9: 17 token columns; in row order 9 + 8 + 7 = 24

    widths.clear()  # a classifier's logits on the scored split: the same order, the same rows back
    classifier = torch.nn.Module()
    classifier.forward = lambda batch: encoder(batch["input_ids"], batch["attention_mask"])
    logits = M.logits_of(classifier, SubsetView(TokenizedTexts(ids, mask, torch.zeros(len(lengths))), rows),
                         Accelerator(cpu=True), batch_size=2)
    assert logits[:, 0].tolist() == rows.tolist() and widths == [1, 7, 9]


def test_fine_tune_encoders_run_channels_last_with_the_same_embeddings(vision_run):
    """Every encoder the grid makes (pretrained, from scratch, a timm student) is NHWC, as in pretraining, unless
    pretrain.channels_last=false; the memory format changes the speed, not what the encoder computes."""
    enc_path = vision_run / "encoder"

    def encoders(*overrides):
        cfg = load_config("configs/vision/simclr_digits.yaml", [f"output_dir={vision_run}", *overrides])
        data = labeled_data(cfg, read_spec(enc_path), enc_path)
        return [data.encoder(pretrained=True, path=enc_path), data.encoder(pretrained=False, path=enc_path),
                data.student_encoder("test_resnet", enc_path)[0]]

    def nhwc(encoder):  # (a 1x1 kernel is contiguous in both formats: some kernel must be NHWC only)
        convs = [p for p in encoder.parameters() if p.ndim == 4]
        return (all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
                and any(not p.is_contiguous() for p in convs))

    fast, plain = encoders(), encoders("pretrain.channels_last=false")
    assert all(nhwc(e) and e.channels_last for e in fast) and not any(nhwc(e) or e.channels_last for e in plain)
    spec = read_spec(enc_path)
    images = torch.randint(0, 256, (16, spec["channels"], spec["image_size"], spec["image_size"]), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(fast[0].eval()(images), plain[0].eval()(images), atol=1e-5)


def test_linear_probe_head_reproduces_the_probe_on_raw_embeddings():
    """LP-FT starts from the probe: the folded nn.Linear must give the probe's own predictions."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3
    labels = np.repeat(np.arange(4), 50)
    feats = centers[labels] + torch.randn(200, 16, generator=g) * 2 + 5.0  # off-centre, so the folding matters
    keep = labels != 3  # class 3 absent from the labeled subset
    probe = M.LinearProbe(feats[keep], labels[keep], num_classes=5, c=0.1)
    head = probe.as_head()
    with torch.no_grad():
        head_preds = head(feats).argmax(-1).numpy()
    np.testing.assert_array_equal(head_preds, probe.predict(feats))
    assert not set(head_preds) & {3, 4}  # absent classes are never predicted
    assert (probe.predict(feats[keep]) == labels[keep]).mean() > 0.8


def test_frozen_embeddings_are_computed_only_for_rows_that_read_them():
    from types import SimpleNamespace

    from ssl_pipeline.finetune.runner import needs_embeddings

    lp_ft, random_head = SimpleNamespace(head="linear", head_init="probe"), SimpleNamespace(head="linear", head_init="random")
    for row in ("linear_probe", "knn"):
        assert needs_embeddings([row, "supervised"], random_head, base=False)
    for row in ("finetune", "fixmatch", "distill", "distill_small"):  # only for the probe their head starts from
        assert needs_embeddings([row], lp_ft, base=False) and not needs_embeddings([row], random_head, base=False)
    assert not needs_embeddings(["supervised", "classic"], lp_ft, base=False)
    # the starting checkpoint's embeddings only for its own rows, and the SSL encoder's never for those
    assert needs_embeddings(["base_probe"], random_head, base=True) and not needs_embeddings(["base_probe"], lp_ft, base=False)
    assert not needs_embeddings(["linear_probe", "finetune"], lp_ft, base=True)


def test_label_multiplier_interpolates_on_log_scale():
    rows = []
    for n, sup, ssl in ((10, 0.5, 0.7), (100, 0.7, 0.8), (1000, 0.9, 0.95)):
        for seed in (0, 1):
            rows.append({"method": "supervised", "label_fraction": n / 1000, "n_labels": n, "seed": seed, "accuracy": sup})
            rows.append({"method": "linear_probe", "label_fraction": n / 1000, "n_labels": n, "seed": seed, "accuracy": ssl})
    lm = label_multiplier(summarize(rows))
    assert lm["multiplier"] == pytest.approx(10.0)  # supervised reaches 0.7 exactly at 100 labels
    rows = [r for r in rows if not (r["method"] == "linear_probe" and r["n_labels"] == 10)]
    rows += [{"method": "knn", "label_fraction": 0.01, "n_labels": 10, "seed": s, "accuracy": 0.99} for s in (0, 1)]
    lm = label_multiplier(summarize(rows))
    assert lm["multiplier"] is None and lm["text"] == "> 100.0×"


def test_the_plot_is_ticked_at_the_label_budgets_measured():
    """24 and 240 labels: matplotlib's log axis labelled only minor ticks there, as 3×10¹ … 2×10²."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssl_pipeline.finetune.report import label_budget_axis

    fig, ax = plt.subplots()
    ax.plot([24, 240], [0.8, 0.9])
    label_budget_axis(ax, [24, 240, 6000])
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["24", "240", "6,000"]
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
    plt.close(fig)


def test_a_report_from_another_recipe_names_the_changed_key_and_keys_added_later_resume(tmp_path):
    """A report stores its recipe: resuming under other settings names each changed key with both values; a key the
    report lacks (added to the schema after it was written) counts at its default; a tracker added resumes; other
    weights are named as such."""
    from ssl_pipeline.errors import UserError
    from ssl_pipeline.finetune.runner import _load_rows, report_identity

    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "ssl_encoder.json").write_text("{}\n")
    (enc / "model.safetensors").write_bytes(b"weights")
    default = load_config("configs/vision/simclr_digits.yaml", [])
    path, row = tmp_path / "label_efficiency.json", {"method": "knn", "label_fraction": 0.1, "seed": 0, "accuracy": 0.5}
    stored = report_identity(default, enc)
    path.write_text(json.dumps({**stored, "rows": [row]}))
    assert _load_rows(path, report_identity(default, enc), default, enc, ["knn"]) == [row]

    other = load_config("configs/vision/simclr_digits.yaml", ["finetune.knn_k=5", "finetune.epochs=7"])
    with pytest.raises(UserError, match=r"another recipe: finetune.epochs \(30 there, 7 now\); finetune.knn_k "
                                        r"\(20 there, 5 now\); use those settings"):
        _load_rows(path, report_identity(other, enc), other, enc, ["knn"])

    # a report written before finetune.quantize existed: resumes at the key's default, not off it
    older = json.loads(json.dumps(stored))
    del older["recipe"]["finetune"]["quantize"]
    older["fingerprint"] = "written-by-an-older-release"
    path.write_text(json.dumps({**older, "rows": [row]}))
    assert _load_rows(path, report_identity(default, enc), default, enc, ["knn"]) == [row]
    int8 = load_config("configs/vision/simclr_digits.yaml", ["finetune.quantize=int8"])
    with pytest.raises(UserError, match=r"finetune.quantize \('none' there, 'int8' now\)"):
        _load_rows(path, report_identity(int8, enc), int8, enc, ["knn"])

    # trackers change no result: a report written with the tracking keys in its recipe and fingerprint resumes with a
    # tracker added
    tracked = load_config("configs/vision/simclr_digits.yaml", ["finetune.log_with=[tensorboard]"])
    older = json.loads(json.dumps(stored))
    older["recipe"]["finetune"]["log_with"], older["fingerprint"] = [], "hashed-with-the-tracking-keys"
    path.write_text(json.dumps({**older, "rows": [row]}))
    assert _load_rows(path, report_identity(tracked, enc), tracked, enc, ["knn"]) == [row]
    assert report_identity(tracked, enc) == stored

    (enc / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(UserError, match="holds results for another encoder"):
        _load_rows(path, report_identity(default, enc), default, enc, ["knn"])


def test_stored_rows_on_other_examples_are_refused_not_mixed(tmp_path):
    """Images added to a folder, or a test carve made otherwise, change the split: a resumed grid must not put rows
    scored on the old split beside rows scored on the new one (their per-example results would not even align)."""
    import numpy as np

    from ssl_pipeline.errors import UserError
    from ssl_pipeline.finetune.runner import _load_rows, report_identity, split_digest

    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "ssl_encoder.json").write_text("{}\n")
    cfg = load_config("configs/vision/simclr_digits.yaml", [])
    train, test = np.array([0, 1, 0, 1, 2, 2]), np.array([0, 1, 2])

    def header(tr, te):
        return {**report_identity(cfg, enc), "n_train": len(tr), "n_test": len(te), "split_digest": split_digest(tr, te)}

    path, row = tmp_path / "label_efficiency.json", {"method": "knn", "label_fraction": 1.0, "seed": 0, "accuracy": 0.5}
    path.write_text(json.dumps({**header(train, test), "rows": [row]}))
    assert _load_rows(path, header(train, test), cfg, enc, ["knn"]) == [row]
    with pytest.raises(UserError, match=r"holds results on other examples \(the same counts, other examples\): the "
                                        r"data or its test carve changed since"):
        _load_rows(path, header(train, test[::-1].copy()), cfg, enc, ["knn"])
    with pytest.raises(UserError, match=r"other examples \(n_train 6 there, 7 now\)"):
        _load_rows(path, header(np.append(train, 0), test), cfg, enc, ["knn"])
    # a report written before the digest: its example counts decide
    older = {k: v for k, v in header(train, test).items() if k != "split_digest"}
    path.write_text(json.dumps({**older, "rows": [row]}))
    assert _load_rows(path, header(train, test), cfg, enc, ["knn"]) == [row]
    with pytest.raises(UserError, match=r"n_test 3 there, 2 now"):
        _load_rows(path, header(train, test[:2]), cfg, enc, ["knn"])


def test_few_labels_per_class_raise_no_regression_warning_on_the_console():
    """1 % of 2,199 gcloud man pages is 21 labels of 12 classes: every probe and kNN fit printed scikit-learn's
    "the number of unique classes is greater than 50 % ... could represent a regression problem" between the
    progress lines. The CLI silences that one; other warnings still come."""
    import warnings

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from ssl_pipeline.cli import _quiet

    x, y = np.random.default_rng(0).normal(size=(21, 8)), np.arange(21) % 12
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _quiet()
        LogisticRegression(max_iter=50).fit(x, y)
        warnings.warn("something else", UserWarning)
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "unique classes" in m] and "something else" in said


def test_the_classic_baselines_convergence_warning_is_one_line_once(recwarn, capsys):
    import warnings

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from ssl_pipeline import progress
    from ssl_pipeline.finetune import runner

    x, y = np.random.default_rng(0).normal(size=(60, 30)), np.arange(60) % 3
    progress._SAID.clear()
    for _ in range(3):
        runner.fit_saying_once(LogisticRegression(max_iter=1), x, y)
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and said[0].startswith("note: the classic baseline's logistic regression reached its "
                                                 "iteration limit")
    assert not [w for w in recwarn if "converge" in str(w.message)]

    class Noisy(LogisticRegression):
        def fit(self, x, y):
            warnings.warn("something else", UserWarning)
            return super().fit(x, y)

    with pytest.warns(UserWarning, match="something else"):
        runner.fit_saying_once(Noisy(), x, y)


def test_classic_text_baseline_reads_texts_without_spaces_by_their_characters():
    """TF-IDF of words alone reads a Japanese sentence (no spaces) as one token, never seen again at test time: the
    baseline was a straw man there (Debian's Japanese descriptions, validation: 33.9 % at 10 % labels against 49.9 %
    with character n-grams)."""
    from types import SimpleNamespace

    from ssl_pipeline.finetune.labeled import TextLabeled

    rng = np.random.default_rng(0)
    kana = list("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめも")

    def text(word):
        left, right = ("".join(rng.choice(kana, 6)) for _ in range(2))
        return left + word + right

    words = {0: "データ", 1: "ネット", 2: "ゲーム"}
    labels = np.arange(90) % 3
    texts = [text(words[y]) for y in labels]
    scores = {}
    for features in ("words", "chars", "words+chars"):
        cfg = load_config("configs/text/mlm_embedded.yaml", [f"finetune.classic.text_features={features}"])
        model = TextLabeled.classic_model(SimpleNamespace(cfg=cfg))
        model.fit(texts[:60], labels[:60])
        scores[features] = (model.predict(texts[60:]) == labels[60:]).mean()
    assert scores["words"] < 0.6 and scores["chars"] == scores["words+chars"] == 1.0, scores


def test_classic_text_rows_written_before_the_setting_existed_are_words_only(tmp_path):
    """A text report's classic rows from before finetune.classic.text_features were made from words: resuming them
    under the new default is refused, naming the key; setting it to words resumes; other rows and images are
    untouched."""
    from ssl_pipeline.errors import UserError
    from ssl_pipeline.finetune.runner import _load_rows, report_identity

    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "ssl_encoder.json").write_text("{}\n")
    (enc / "model.safetensors").write_bytes(b"weights")
    rows = [{"method": m, "label_fraction": 0.1, "seed": 0, "accuracy": 0.5} for m in ("classic", "knn")]
    path = tmp_path / "label_efficiency.json"
    for modality, refused in (("text", True), ("vision", False)):
        now = load_config("configs/text/mlm_embedded.yaml", [])
        header = {**report_identity(now, enc), "modality": modality}
        path.write_text(json.dumps({**header, "rows": json.loads(json.dumps(rows))}))
        assert len(_load_rows(path, header, now, enc, ["knn"])) == 2  # classic not requested: kept as made
        if refused:
            with pytest.raises(UserError, match=r"classic rows made with other settings: "
                                                r"finetune.classic.text_features \('words' there, 'words\+chars' now\)"):
                _load_rows(path, header, now, enc, ["classic", "knn"])
            words = load_config("configs/text/mlm_embedded.yaml", ["finetune.classic.text_features=words"])
            assert len(_load_rows(path, {**report_identity(words, enc), "modality": modality}, words, enc,
                                  ["classic", "knn"])) == 2
        else:
            assert len(_load_rows(path, header, now, enc, ["classic", "knn"])) == 2


def test_image_classic_rows_carry_no_text_setting_and_resume_under_any(tmp_path):
    """finetune.classic.text_features means nothing for pixels: image rows were stamped with it anyway, and a
    report made before a user changed it was refused on resume ('classic rows made with other settings')."""
    from ssl_pipeline.finetune.runner import _load_rows, report_identity, row_settings

    vision = load_config("configs/vision/simclr_digits.yaml", [])
    assert row_settings(vision, "classic") == {}
    assert row_settings(load_config("configs/text/mlm_embedded.yaml", []), "classic") == {
        "classic": {"text_features": "words+chars"}}
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "ssl_encoder.json").write_text("{}\n")
    (enc / "model.safetensors").write_bytes(b"weights")
    stamped = {"method": "classic", "label_fraction": 0.1, "seed": 0, "accuracy": 0.5,
               "settings": {"classic": {"text_features": "words+chars"}}}  # as the earlier version wrote them
    chars = load_config("configs/vision/simclr_digits.yaml", ["finetune.classic.text_features=chars"])
    header = {**report_identity(chars, enc), "modality": "vision"}
    path = tmp_path / "label_efficiency.json"
    path.write_text(json.dumps({**header, "rows": [stamped]}))
    assert len(_load_rows(path, header, chars, enc, ["classic"])) == 1


def test_grid_work_follows_what_each_cell_trains_on():
    """The grid's progress counts examples, so its eta is not a cell count's (a 100 % cell took 14× a 1 % one)."""
    from types import SimpleNamespace

    from ssl_pipeline.config import load_config
    from ssl_pipeline.finetune.runner import cell_work

    cfg = load_config("configs/text/mlm_files.yaml", [])  # batch 64, 10 epochs, 60 to 400 steps, fixmatch 8 passes
    one = SimpleNamespace(num_processes=1)

    def work(method, n):
        return cell_work({"method": method, "n_labels": n}, 1778, cfg, one)

    assert work("finetune", 18) == 60 * 18  # the step floor, on batches of all 18 labels
    assert work("finetune", 1778) == work("supervised", 1778) == 280 * 64  # 10 epochs of 28 batches
    assert work("fixmatch", 18) == round(2.5 * 8 * 28 * 64)  # 8 passes over the pool, two views an example
    assert work("distill", 18) == 60 * 18 + 60 * 64  # teacher, then 2 passes (56 steps) lifted to the 60-step floor
    assert work("classic", 1778) == 1778 and work("linear_probe", 1778) == work("knn", 1778) == 177
