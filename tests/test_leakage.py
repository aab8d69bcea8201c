"""Leakage guard: planted exact and near duplicates of test examples in the pretraining pool are counted, kept apart
from look-alikes, dropped by data.dedupe=true, recorded in the encoder's spec and reported by fine-tuning."""
import json

import numpy as np
import pytest
import torch

from ssl_pipeline.cli import finetune_main, pretrain_main
from ssl_pipeline.data.images import TensorImages
from ssl_pipeline.data.leakage import _jaccard, _shingles, image_duplicates, normalise_text, text_duplicates


def _digits(size=28):
    from sklearn.datasets import load_digits

    import torch.nn.functional as F

    x = torch.tensor(load_digits().images * 16, dtype=torch.float32).unsqueeze(1)
    return F.interpolate(x, size=(size, size), mode="bilinear").round().clamp(0, 255).to(torch.uint8)


def test_planted_image_duplicates_are_found_and_look_alikes_are_not():
    imgs = _digits()
    pool, test = imgs[:1400], imgs[1400:]
    clean = image_duplicates(TensorImages(pool), TensorImages(test))
    planted = test.clone()
    planted[:5] = pool[:5]  # exact copies
    noisy = pool[10:15].int() + torch.randint(-2, 3, pool[10:15].shape)  # re-encoding noise: +-2 grey levels
    planted[5:10] = noisy.clamp(0, 255).to(torch.uint8)
    found = image_duplicates(TensorImages(pool), TensorImages(planted))
    assert found.test_exact == clean.test_exact + 5
    assert found.test_near >= clean.test_near + 5 - 1  # noise may flip a dHash bit of one image
    assert set(range(5)) <= set(found.pool_exact.tolist())
    assert len(set(range(10, 15)) & set(found.pool_near.tolist())) >= 4
    # same digit class written by other hands is a look-alike, not a duplicate
    assert clean.test_exact == 0 and clean.test_near <= 2


def test_planted_text_duplicates_exact_after_normalising_and_near():
    rng = np.random.default_rng(0)
    words = ("library tool daemon parser viewer server client plugin driver font theme game editor shell network "
             "image audio video python perl rust data files debug docs").split()
    pool = [" ".join(rng.choice(words, 7)) for _ in range(100)]
    pool += ["GNU Fortran compiler (multilib support) (cross compiler for ppc64 architecture)"]
    test = [pool[3].upper().replace(" ", ",  ") + "!",  # exact after normalising
            "GNU Fortran compiler (multilib support) (cross compiler for sparc64 architecture)",  # near
            "a window manager for X"]  # unrelated
    assert normalise_text(test[0]) == normalise_text(pool[3])
    found = text_duplicates(pool, test)
    assert found.test_exact == 1 and found.test_near == 1
    assert found.pool_exact.tolist() == [3] and found.pool_near.tolist() == [100]


def test_near_duplicates_just_above_the_threshold_are_found():
    """Pairs at Jaccard 0.80-0.88 (a word changed in a long text): LSH only proposes candidates, and datasketch's
    default banding for a 0.8 threshold proposes a pair at 0.8 about a third of the time; every one must be found."""
    rng = np.random.default_rng(1)
    vocab = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(3, 9))) for _ in range(3000)]
    pool = [" ".join(rng.choice(vocab, 40)) for _ in range(400)]
    test, jaccards = [], []
    for k in range(40):
        words = pool[k].split()
        for _ in range(rng.integers(2, 4)):  # two or three words replaced
            words[rng.integers(len(words))] = str(rng.choice(vocab))
        test.append(" ".join(words))
        jaccards.append(_jaccard(*(_shingles(normalise_text(t)) for t in (pool[k], test[-1]))))
    near = [k for k, j in enumerate(jaccards) if j >= 0.8]
    assert len(near) >= 25 and min(jaccards[k] for k in near) < 0.85  # many pairs close to the threshold
    found = text_duplicates(pool, test)
    assert set(near) <= set(found.pool_near.tolist()) and found.test_near == len(near)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dedupe_drops_planted_duplicates_from_pretraining_and_the_report_counts_them(tmp_path, capsys):
    topics = {"net": "network socket server protocol", "img": "image pixel colour picture"}
    rows = [{"text": f"tool {i} for {topics[k]} work with many options and a manual, variant {i * 7}", "label": k}
            for i in range(60) for k in topics]
    test_rows = [{"text": f"utility {i} about {topics[k]} tasks, kind {i * 3}", "label": k} for i in range(10) for k in topics]
    test_rows[0]["text"] = rows[4]["text"].upper()  # exact duplicate of a training text (after normalising)
    test_rows[1]["text"] = rows[7]["text"].replace("options", "option")  # near duplicate
    train, test = _jsonl(tmp_path / "train.jsonl", rows), _jsonl(tmp_path / "test.jsonl", test_rows)
    base = ["--config", "configs/text/mlm_embedded.yaml", "data.source=jsonl", f"data.files=[{train}]",
            f"data.test_files=[{test}]", "pretrain.max_steps=1", "pretrain.batch_size=2", "model.vocab_size=120"]
    for dedupe in (False, True):
        out = tmp_path / f"dedupe_{dedupe}"
        pretrain_main(base + [f"output_dir={out}", f"data.dedupe={str(dedupe).lower()}"])
        log = capsys.readouterr().out
        assert "1 test text with an exact and 1 with only a near duplicate" in log
        spec = json.loads((out / "encoder" / "ssl_encoder.json").read_text())["leakage"]
        assert spec["test_examples_with_exact_duplicates"] == 1 and spec["pretraining_duplicates"] >= 2
        assert f"(they match {spec['pretraining_duplicates']} pretraining texts)" in log
        assert spec["dropped_from_pretraining"] == (spec["pretraining_duplicates"] if dedupe else 0)
        assert ("dropped from pretraining" in log) == dedupe and ("set data.dedupe=true" in log) != dedupe
    finetune_main(base + [f"output_dir={out}", "data.dedupe=true", "finetune.methods=[knn]", "finetune.seeds=[0]",
                          "finetune.label_fractions=[1.0]"])
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert doc["test_duplicates_in_pretraining"]["test_examples_with_near_duplicates"] == 1
    assert "Leakage guard" in (out / "label_efficiency.md").read_text()
    # an encoder pretrained against another test split says so instead of reporting a count for this one
    other = _jsonl(tmp_path / "other_test.jsonl", test_rows[2:])
    finetune_main(base + [f"output_dir={out}", "data.dedupe=true", f"data.test_files=[{other}]", "finetune.methods=[knn]",
                          "finetune.seeds=[0]", "finetune.label_fractions=[1.0]", "overwrite=true"])
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert doc["test_duplicates_in_pretraining"] == {"checked": False,
                                                     "reason": "the encoder was pretrained on data with another test split"}


def test_the_pool_shrinks_by_the_dropped_images():
    from ssl_pipeline.data.images import without
    from ssl_pipeline.data.images import ImageSplit

    imgs = _digits(8)
    split = ImageSplit(TensorImages(imgs[:100]), None, 0, 8, 1, [], list(range(100)))
    kept = without(split, np.array([3, 5]))
    assert len(kept) == 98 and 3 not in kept.ids and torch.equal(kept.dataset.images[3], imgs[4])


def test_dedupe_and_checkpoints_do_not_change_the_finetune_fingerprint(tmp_path):
    """Both are settled by the encoder's weights; reports written before the keys existed stay resumable."""
    from ssl_pipeline.config import load_config
    from ssl_pipeline.finetune.runner import _fingerprint

    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "ssl_encoder.json").write_text("{}")
    plain = load_config("configs/vision/simclr_digits.yaml", [])
    other = load_config("configs/vision/simclr_digits.yaml", ["data.dedupe=true", "finetune.checkpoints=[all]",
                                                           "data.leakage_check=true"])
    changed = load_config("configs/vision/simclr_digits.yaml", ["finetune.knn_k=5"])
    assert _fingerprint(plain, enc) == _fingerprint(other, enc) != _fingerprint(changed, enc)


def test_the_check_can_be_turned_off_but_not_while_deduping(tmp_path, capsys):
    from ssl_pipeline.errors import UserError
    from ssl_pipeline.config import load_config

    with pytest.raises(UserError) as err:
        load_config("configs/vision/simclr_digits.yaml", ["data.dedupe=true", "data.leakage_check=false"])
    assert "data.dedupe=true needs data.leakage_check=true" in str(err.value)
    out = tmp_path / "off"
    pretrain_main(["--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}", "pretrain.max_steps=1",
                   "pretrain.batch_size=32", "data.leakage_check=false"])
    assert "not checked (data.leakage_check=false)" in capsys.readouterr().out
    spec = json.loads((out / "encoder" / "ssl_encoder.json").read_text())
    assert spec["leakage"] == {"checked": False, "reason": "data.leakage_check=false"}


def test_labels_named_only_at_fine_tuning_are_reported_as_possibly_pretrained_on(tmp_path, capsys):
    """Pretrained with the label column misnamed (the corpus read as unlabeled: every row pretrained on), then
    fine-tuned with it named: the test carve was in the pretraining data, and the report says it may have been."""
    topics = {"net": "network socket server protocol", "img": "image pixel colour picture"}
    rows = [{"text": f"tool {i} for {topics[k]} work, variant {i * 7}", "topic": k} for i in range(30) for k in topics]
    corpus = _jsonl(tmp_path / "corpus.jsonl", rows)
    out = tmp_path / "o"
    base = ["--config", "configs/text/mlm_embedded.yaml", "data.source=jsonl", f"data.files=[{corpus}]",
            "pretrain.max_steps=1", "pretrain.batch_size=2", "model.vocab_size=120", f"output_dir={out}"]
    pretrain_main(base)
    assert "not checked (no test split)" in capsys.readouterr().out
    finetune_main(base + ["data.label_column=topic", "finetune.methods=[knn]", "finetune.seeds=[0]",
                          "finetune.label_fractions=[1.0]"])
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert doc["test_duplicates_in_pretraining"]["checked"] is False
    assert "these test examples were pretrained on" in doc["test_duplicates_in_pretraining"]["reason"]
    assert "if that was this data, these test examples were pretrained on" in (out / "label_efficiency.md").read_text()


def test_a_clean_pool_is_not_described_as_an_empty_one():
    """'… in the pretraining pool (0 pretraining images)' read as if the pool were empty; nothing matched, nothing said."""
    from ssl_pipeline.data.leakage import describe

    clean = {"checked": True, "test_examples_with_exact_duplicates": 0, "test_examples_with_near_duplicates": 0,
             "pretraining_duplicates": 0, "dropped_from_pretraining": 0}
    assert describe(clean, "images") == ("duplicates between pretraining and test data: 0 test images with an exact and "
                                         "0 with only a near duplicate in the pretraining pool")
    one = {**clean, "test_examples_with_exact_duplicates": 1, "pretraining_duplicates": 1}
    assert describe(one, "images").endswith("(they match 1 pretraining image); set data.dedupe=true to drop them")
