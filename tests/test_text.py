"""MLM: masking statistics, packing, streaming shards, and a 2-process run whose export reloads with Auto*."""
import json
import math

import pytest
import torch

from conftest import OneProcess, read_metrics, run_stage
from ssl_pipeline import load_encoder
from ssl_pipeline.cli import pretrain_main
from ssl_pipeline.config import DataConfig
from ssl_pipeline.data.text import PackedBlocks, load_texts, pack_ids, stream_texts
from ssl_pipeline.masking import IGNORE, bucketed_positions, mask_tokens
from ssl_pipeline.tasks.mlm import MLMTask


def test_masking_statistics():
    g = torch.Generator().manual_seed(0)
    vocab, mask_id = 1000, 4
    special = torch.zeros(vocab, dtype=torch.bool)
    special[:5] = True
    ids = torch.randint(5, vocab, (512, 128), generator=g)
    ids[:, 0], ids[:, -1], ids[::7, 60:] = 2, 3, 0  # [CLS], [SEP], padding
    masked, selected, labels = mask_tokens(ids, special, mask_id, vocab, 0.15, g)
    eligible = ~special[ids]
    rate = selected.sum() / eligible.sum()
    assert abs(rate.item() - 0.15) < 0.005
    assert not selected[special[ids]].any()  # specials are never selected
    assert torch.equal(masked[special[ids]], ids[special[ids]])  # ... nor changed
    sel_in, sel_orig = masked[selected], ids[selected]
    frac_mask = (sel_in == mask_id).float().mean().item()
    frac_same = (sel_in == sel_orig).float().mean().item()
    assert abs(frac_mask - 0.8) < 0.01
    assert abs(frac_same - (0.1 + 0.1 / vocab)) < 0.01  # 10 % kept (+ random draws that hit the original)
    assert torch.equal(labels, sel_orig)
    assert torch.equal(masked[~selected], ids[~selected])


def test_packing_keeps_every_token_once():
    g = torch.Generator().manual_seed(1)
    docs = [torch.randint(10, 500, (int(n),), generator=g).tolist() for n in torch.randint(1, 40, (200,), generator=g)]
    blocks = pack_ids(docs, 32, sep_id=3)
    stream = [t for b in blocks for t in b]
    expected = [t for d in docs for t in d + [3]]
    assert stream == expected
    assert all(len(b) == 32 for b in blocks[:-1]) and 1 <= len(blocks[-1]) <= 32


def test_token_frequency_loss_is_the_held_out_cross_entropy_of_smoothed_training_frequencies():
    from ssl_pipeline.masking import token_frequency_loss

    special = torch.tensor([True, True, False, False, False])  # ids 0, 1 special (pad, sep); 2..4 ordinary
    train = torch.tensor([[2, 2, 2, 3, 1], [2, 3, 0, 0, 0]], dtype=torch.int32)  # counts 2:4, 3:2, 4:0
    held = torch.tensor([[2, 4, 1, 0]], dtype=torch.int32)  # specials are never masked, so never scored
    p = {2: 5 / 9, 3: 3 / 9, 4: 1 / 9}  # add-one smoothing over the ordinary tokens
    expected = -(math.log(p[2]) + math.log(p[4])) / 2
    assert token_frequency_loss(train, held, special) == pytest.approx(expected)


def test_packed_batches_carry_a_mask_only_when_padded():
    """Full blocks need no attention mask (the model then skips it); a batch with the short last block gets one."""
    blocks = [[7] * 8, [8] * 8, [9] * 3]
    data = PackedBlocks(blocks, 8, pad_id=0)
    full = data.__getitems__([0, 1])
    assert set(full) == {"input_ids"} and full["input_ids"].shape == (2, 8)
    padded = data.__getitems__([1, 2])
    assert padded["attention_mask"].tolist() == [[1] * 8, [1] * 3 + [0] * 5]
    assert padded["input_ids"][1].tolist() == [9, 9, 9] + [0] * 5
    assert MLMTask.batch_items(full)["tokens"] == 16 and MLMTask.batch_items(padded)["tokens"] == 11


def test_embedded_corpus_is_real_and_labelled():
    cfg = DataConfig(source="embedded")
    train, test = load_texts(cfg, "train"), load_texts(cfg, "test")
    assert train.num_classes == 10 and len(train) > 1500 and len(test) > 400
    assert not set(train.texts) & set(test.texts)


def test_the_stdlib_corpus_is_parsed_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    """~3 s of parsing in every process of every run otherwise; a damaged cache file is parsed again, not trusted."""
    from ssl_pipeline.data import text as T

    monkeypatch.setenv("SSL_PIPELINE_CACHE", str(tmp_path))
    parsed, real_parse = [], T._parse_stdlib_docstrings
    monkeypatch.setattr(T, "_parse_stdlib_docstrings", lambda root: parsed.append(root) or real_parse(root))
    T.stdlib_docstrings.cache_clear()
    try:
        first = T.stdlib_docstrings()
        (cached,) = tmp_path.glob("stdlib_docstrings-*.json")
        T.stdlib_docstrings.cache_clear()
        assert T.stdlib_docstrings() == first and len(parsed) == 1  # read back, not parsed
        cached.write_text('{"texts": ["half a wri')
        T.stdlib_docstrings.cache_clear()
        assert T.stdlib_docstrings() == first and len(parsed) == 2
        (tmp_path / "a_file").write_text("")
        monkeypatch.setenv("SSL_PIPELINE_CACHE", str(tmp_path / "a_file" / "cache"))  # cannot be created
        T.stdlib_docstrings.cache_clear()
        assert T.stdlib_docstrings() == first and len(parsed) == 3
        assert len(first[0]) == len(first[1]) > 1000 and len(set(first[1])) == len(T.EMBEDDED_PACKAGES)
    finally:
        T.stdlib_docstrings.cache_clear()


def test_streaming_shards_are_disjoint(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"document number {i}"}) + "\n" for i in range(100)))
    cfg = DataConfig(source="jsonl", files=[str(corpus)], streaming=True)
    seen = [[row["text"] for row in stream_texts(cfg, rank, 2)] for rank in range(2)]
    assert seen[0] and seen[1]
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) + len(seen[1]) == 100


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlm") / "run"
    run_stage("pretrain", ["--config", "configs/text/mlm_embedded.yaml", f"output_dir={out}", "pretrain.epochs=2",
                           "pretrain.min_steps=0", "pretrain.batch_size=32", "pretrain.log_every=5", "pretrain.eval_every=20",
                           "model.vocab_size=2000", "pretrain.learning_rate=0.002"], nproc=2)
    return out


def test_two_process_mlm_learns(mlm_run):
    rows = [r for r in read_metrics(mlm_run) if "loss" in r]
    for key in ("loss", "masked_accuracy", "samples_per_sec", "tokens_per_sec", "lr"):
        assert key in rows[-1]
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0
    evals = [r for r in read_metrics(mlm_run, every_row=True) if "eval_perplexity" in r]
    assert evals and evals[-1]["eval_perplexity"] < evals[0]["eval_perplexity"] or len(evals) == 1


def test_export_reloads_with_auto_classes(mlm_run):
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    path = str(mlm_run / "encoder")
    tok = AutoTokenizer.from_pretrained(path)
    batch = tok(["Return the event loop.", "Parse an email message from a string."], padding=True, return_tensors="pt")
    mlm = AutoModelForMaskedLM.from_pretrained(path).eval()
    base = AutoModel.from_pretrained(path).eval()
    enc = load_encoder(path)
    with torch.no_grad():
        logits = mlm(**batch).logits
        hidden = base(**batch).last_hidden_state
        emb = enc(batch["input_ids"], batch["attention_mask"])
        emb2 = load_encoder(path)(batch["input_ids"], batch["attention_mask"])
    assert logits.shape[-1] == len(tok)
    assert torch.equal(emb, emb2)
    assert emb.shape == (2, hidden.shape[-1])
    assert torch.allclose(mlm.bert(**batch).last_hidden_state, hidden, atol=1e-5)


def test_streaming_pretraining_run(mlm_run, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"the event loop runs task {i} and returns"}) + "\n" for i in range(400)))
    out = tmp_path / "stream"
    pretrain_main(["--config", "configs/text/mlm_embedded.yaml", f"output_dir={out}", "data.source=jsonl",
                   f"data.files=[{corpus}]", "data.streaming=true", f"model.tokenizer={mlm_run / 'encoder'}",
                   "pretrain.max_steps=6", "pretrain.batch_size=8", "pretrain.log_every=2"])  # in-process
    assert read_metrics(out)[-1]["step"] == 6
    assert (out / "encoder" / "config.json").is_file()


def test_extra_pretrain_files_feed_pretraining_only(tmp_path):
    from ssl_pipeline.data.text import extra_pretrain_texts

    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["long unlabeled text one", "", "another text"]))
    cfg = DataConfig(source="embedded", extra_pretrain_files=[str(extra)])
    assert extra_pretrain_texts(cfg) == ["long unlabeled text one", "another text"]
    assert "another text" not in load_texts(cfg, "train").texts  # labeled splits are untouched
    assert extra_pretrain_texts(DataConfig(source="embedded")) == []


@pytest.mark.parametrize("architecture", ["bert", "prelayernorm"])
def test_masked_lm_head_only_at_selected_positions_matches_auto_export(tmp_path, architecture):
    """Both architectures: the masked-only head equals the full model's logits there, the no-padding fast
    path (no mask) equals the explicit all-ones mask, and save_pretrained reloads with AutoModelForMaskedLM."""
    from transformers import AutoModelForMaskedLM

    from ssl_pipeline.config import ModelConfig
    from ssl_pipeline.models.text import masked_lm

    cfg = ModelConfig(architecture=architecture, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                      dropout=0.0)
    model = masked_lm(cfg, vocab_size=100, max_length=16, pad_id=0).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (3, 16), generator=g)
    full = torch.ones_like(ids)
    padded = full.clone()
    padded[2, 10:] = 0
    ids[2, 10:] = 0
    selected = torch.rand(3, 16, generator=g) < 0.3
    selected[2, 10:] = False
    with torch.no_grad():
        pos2 = selected[:2].flatten().nonzero().squeeze(1)
        fast = model(ids[:2], None, pos2)
        explicit = getattr(model.mlm, model.head_name)(
            model.mlm.base_model(input_ids=ids[:2], attention_mask=full[:2]).last_hidden_state[selected[:2]])
        masked_out = model(ids, padded, selected.flatten().nonzero().squeeze(1))
        model.mlm.save_pretrained(tmp_path)
        reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
        ref = reloaded(input_ids=ids, attention_mask=padded).logits[selected]
    assert type(reloaded).__name__ == type(model.mlm).__name__
    assert torch.allclose(fast, explicit, atol=1e-5)
    assert torch.allclose(masked_out, ref, atol=1e-4)


def test_bucketed_positions_pad_to_few_sizes_and_ignore_the_padding():
    g = torch.Generator().manual_seed(0)
    sizes = set()
    for _ in range(200):
        selected = torch.rand(64, 128, generator=g) < 0.15
        labels = torch.randint(5, 100, (int(selected.sum()),), generator=g)
        pos, lab = bucketed_positions(selected, labels)
        n = labels.numel()
        assert pos.numel() == lab.numel() >= n and pos.numel() <= n * 1.125 + 64
        assert torch.equal(pos[:n], selected.flatten().nonzero().squeeze(1)) and torch.equal(lab[:n], labels)
        assert (lab[n:] == IGNORE).all()
        sizes.add(pos.numel())
    assert len(sizes) <= 3  # ~1,230 +- 35 selected tokens fall in a couple of 128-wide buckets


def test_tokenizer_is_trained_once_and_cached(tmp_path, monkeypatch):
    import ssl_pipeline.tasks._text as mlm_task

    texts = [f"Return the value number {i} of the event loop." for i in range(200)]
    digest = mlm_task.corpus_digest(texts)
    first = mlm_task.cached_tokenizer(texts, 300, str(tmp_path), OneProcess(), digest)
    saved = list(tmp_path.glob("tokenizer-*/tokenizer.json"))
    assert len(saved) == 1
    monkeypatch.setattr(mlm_task, "train_tokenizer", lambda *a, **k: pytest.fail("trained again"))
    second = mlm_task.cached_tokenizer(texts, 300, str(tmp_path), OneProcess(), digest)
    assert second.get_vocab() == first.get_vocab()
    assert second("event loop")["input_ids"] == first("event loop")["input_ids"]


@pytest.mark.parametrize("architecture", ["bert", "prelayernorm"])
def test_electra_generator_shares_the_detector_token_table_and_updates_every_token(architecture):
    """ELECTRA's tying: one token table (a single parameter of the combined model) that the generator's vocabulary
    softmax updates for every token, also those absent from the batch; right padding does not move the real
    tokens' positions (tokens enter as embeddings, so positions are not derived from the ids)."""
    import torch.nn.functional as F

    from ssl_pipeline.config import ModelConfig
    from ssl_pipeline.models.text import (ReplacedTokenDetection, SharedEmbeddingGenerator, base_encoder,
                                          scaled_model_config)

    cfg = ModelConfig(architecture=architecture, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                      dropout=0.0)
    detector = base_encoder(cfg, 60, 16, 0)
    small = base_encoder(scaled_model_config(cfg, 0.5), 60, 16, 0)
    generator = SharedEmbeddingGenerator(small, detector.get_input_embeddings())
    model = ReplacedTokenDetection(generator, detector).eval()
    table = detector.get_input_embeddings().weight
    assert sum(p is table for p in model.parameters()) == 1
    assert small.config.hidden_size == 16 and small.embeddings.word_embeddings is None

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 30, (2, 16), generator=g)  # tokens 30..59 never appear
    mask = torch.ones_like(ids)
    ids[1, 10:], mask[1, 10:] = 0, 0
    positions = torch.tensor([1, 5, 17, 25])  # two in each row, all before the padding
    logits = generator(ids, mask, positions)
    assert logits.shape == (4, 60)
    with torch.no_grad():
        alone = generator(ids[1:, :10], None, torch.tensor([1, 9]))
    assert torch.allclose(logits[2:], alone, atol=1e-4)
    F.cross_entropy(logits, ids.flatten()[positions]).backward()
    assert (table.grad[30:].abs().sum(1) > 0).all()


def test_tokenizer_keeps_the_marks_that_make_words_in_other_languages():
    """BERT-uncased's accent stripping merged distinct words: Japanese voicing marks (データ -> テータ), Russian case
    endings (технологий -> технологии), German umlauts (würde -> wurde). Full-width forms fold to plain ones."""
    from ssl_pipeline.data.text import train_tokenizer

    texts = ["データベースを管理するツールです", "технологий и технологии", "würde und wurde", "ＡＢＣ１２３ abc123"] * 20
    tok = train_tokenizer(texts, 300)
    normalize = tok.backend_tokenizer.normalizer.normalize_str
    assert normalize("データベースです") == "データベースです"
    assert normalize("технологий") != normalize("технологии") and normalize("würde") != normalize("wurde")
    assert normalize("ＡＢＣ１２３ Straße") == "abc123 straße"
    assert tok.unk_token_id not in tok("データベースを管理する würde технологий")["input_ids"]


def test_a_streamed_corpus_is_read_in_its_encoding_and_a_wrong_one_is_one_line(tmp_path):
    """data.streaming ignored data.encoding (a cp1252 corpus was decoded as UTF-8), and the decode error came out of
    the DataLoader mid-run as a traceback."""
    from ssl_pipeline.config import DataConfig
    from ssl_pipeline.data.text import StreamingBlocks, stream_texts, train_tokenizer
    from ssl_pipeline.errors import UserError

    corpus = tmp_path / "notes.txt"
    corpus.write_text("".join(f"caf\u00e9 note number {i} about things\n" for i in range(200)), encoding="cp1252")
    tok = train_tokenizer([f"caf\u00e9 note number {i} about things" for i in range(200)], vocab_size=120)
    right = stream_texts(DataConfig(source="text", files=[str(corpus)], encoding="cp1252", streaming=True), 0, 1)
    assert next(iter(right))["text"] == "caf\u00e9 note number 0 about things"
    wrong = stream_texts(DataConfig(source="text", files=[str(corpus)], streaming=True), 0, 1)
    with pytest.raises(UserError, match=r"the streamed corpus is not utf-8 text \(byte 0xe9\); set data.encoding"):
        next(iter(StreamingBlocks(wrong, tok, "text", 16)))



def test_a_table_of_texts_says_what_was_read_as_what_in_one_line(tmp_path, capsys):
    """As a folder's summary: texts and classes found, rows without a label (pretraining only), the test carve, and
    rows dropped for an empty text — said once, however often the run loads the table."""
    import csv

    from ssl_pipeline import progress

    rows = [{"review": f"{w} review number {i}", "topic": "" if i % 10 == 0 else w}
            for i, w in enumerate(["food", "sports", "tech"] * 20)]
    rows[1]["review"], rows[2]["review"] = "", "   "
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["review", "topic"])
        writer.writeheader()
        writer.writerows(rows)
    progress._SAID.clear()
    cfg = DataConfig(source="csv", files=[str(path)], text_column="review", label_column="topic", test_fraction=0.2)
    for split in ("pretrain", "train", "pretrain"):
        load_texts(cfg, split)
    assert capsys.readouterr().out.splitlines() == [
        "data.files reviews.csv: 52 texts in 3 classes (food, sports, tech) + 6 with no topic (pretraining only); "
        "a stratified 20% test split is carved out; skipped rows: 2 with no text"]
    progress._SAID.clear()
    load_texts(DataConfig(source="csv", files=[str(path)], text_column="review", label_column="stars"), "pretrain")
    assert "data.files reviews.csv: 58 unlabeled texts; skipped rows: 2 with no text" in capsys.readouterr().out


def test_the_tokenizer_is_the_same_in_every_process(tmp_path):
    """The WordPiece trainer met word-inner characters ('##e') in hash-map order, which Rust seeds per process:
    merges of equal count came out in another order and one corpus gave another vocabulary in every run. Three
    processes (each its own hash seed) must train the same vocabulary, ids included."""
    import subprocess
    import sys

    script = ("import json, random, sys\n"
              "from ssl_pipeline.data.text import train_tokenizer\n"
              "rng = random.Random(0)\n"
              "words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyzé') for _ in range(rng.randint(2, 9))) for _ in range(400)]\n"
              "texts = [' '.join(rng.choice(words) for _ in range(12)) for _ in range(600)]\n"
              "print(json.dumps(sorted(train_tokenizer(texts, 700).get_vocab().items())))\n")
    vocabularies = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
                    for _ in range(3)}
    assert len(vocabularies) == 1 and len(json.loads(vocabularies.pop())) == 700


def test_a_column_is_read_in_one_arrow_call_with_the_rows_a_selection_keeps():
    """column_values replaces per-row indexing of datasets' lazy Column (an Arrow select a row: ~45 s for an
    82k-row corpus); it must give what row indexing gives, in the selection's order, ClassLabel ids and None
    cells included."""
    import datasets

    from ssl_pipeline.data.columns import column_values

    d = datasets.Dataset.from_dict({"text": ["a", None, "c", "d"], "label": [0, 1, 1, 0]},
                                   features=datasets.Features({"text": datasets.Value("string"),
                                                               "label": datasets.ClassLabel(names=["x", "y"])}))
    chosen = d.select([3, 1, 2])
    assert column_values(chosen, "text") == [chosen[i]["text"] for i in range(3)] == ["d", None, "c"]
    assert column_values(chosen, "label") == [chosen[i]["label"] for i in range(3)] == [0, 1, 1]
