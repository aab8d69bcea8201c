"""A folder of text documents (`data.source=folder` with a text method, or `auto` with a directory in data.root):
the layouts of IMDB's aclImdb and 20 Newsgroups, what is skipped and said, the carve, and a tiny end-to-end run."""
import json

import pytest

from conftest import SMALL_TEXT_MODEL
from ssl_pipeline import progress
from ssl_pipeline.cli import finetune_main, pretrain_main
from ssl_pipeline.config import DataConfig, load_config
from ssl_pipeline.data.text import load_texts
from ssl_pipeline.data import text_folder
from ssl_pipeline.errors import UnlabeledData, UserError

WORDS = {"pos": "lovely great fine superb", "neg": "awful broken sad dreadful", "space": "orbit rocket moon",
         "hockey": "puck goal ice skate"}


def _doc(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)


def _acl_imdb(root, n=6):
    """aclImdb as published: train/{pos,neg,unsup}, test/{pos,neg}, bag-of-words and url files beside the classes."""
    for split in ("train", "test"):
        for c in ("pos", "neg"):
            for i in range(n):
                _doc(root / split / c / f"{i}_7.txt", f"{split} review {i}: the film was {WORDS[c]} ({c})")
    for i in range(4):
        _doc(root / "train" / "unsup" / f"{i}_0.txt", f"an unlabeled review {i} of some film")
    _doc(root / "train" / "urls_pos.txt", "http://www.imdb.com/title/tt0453418/usercomments\n")
    _doc(root / "train" / "labeledBow.feat", "9 0:9 1:1 2:4\n")
    _doc(root / "README", "Large Movie Review Dataset v1.0\n")
    _doc(root / "unlabeled" / "forum.txt", "a forum post about films")  # unlabeled/: read whatever its nesting
    _doc(root / "unlabeled" / "blog" / "2023.md", "a blog post about films")
    _doc(root / "imdb.vocab", "the\nand\n")


@pytest.fixture(autouse=True)
def _fresh_process_state():
    progress._SAID.clear()
    text_folder._READ.clear()


def test_aclimdb_as_published_reads_its_splits_unlabeled_reviews_and_skips_the_rest(tmp_path, capsys, monkeypatch):
    root = tmp_path / "aclImdb"
    _acl_imdb(root)
    # the starting config names no files: a directory in data.root is read as a folder of documents
    d = load_config("configs/text/mlm_files.yaml", [f"data.root={root}"]).data
    assert d.source == "folder"
    pre, train, test = (load_texts(d, s) for s in ("pretrain", "train", "test"))
    said = capsys.readouterr().out
    assert said.count("data.root") == 1, said  # one line, once per process
    assert (f"data.root {root}: 12 documents in 2 classes (neg, pos) + 6 unlabeled (pretraining only); skipped files: "
            "2 beside the class folders of train/ (labeledBow.feat, urls_pos.txt)") in said
    assert load_texts(d, "validation") is None
    assert train.class_names == ["neg", "pos"] and len(train) == 12 and len(test) == 12
    assert sorted(set(train.labels.tolist())) == [0, 1]
    assert all(("(pos)" in t) == (lab == 1) for t, lab in zip(train.texts + test.texts, list(train.labels) + list(test.labels)))
    # unsup/ is pretraining only; test/ is never pretrained on (its own folder: nothing carved)
    assert len(pre) == 12 + 4 + 2 and sum("unlabeled review" in t for t in pre.texts) == 4
    assert "a forum post about films" in pre.texts and "a blog post about films" in pre.texts
    assert not any("unlabeled" in t for t in train.texts + test.texts)
    assert not set(pre.texts) & set(test.texts)
    assert train.ids[0] == "train/neg/0_7.txt" and test.ids[0] == "test/neg/0_7.txt"
    assert not any("http://" in t or "Large Movie" in t for t in pre.texts)
    read, reader = [], text_folder._read_texts  # fine-tuning reads the labeled documents only, not the pools
    monkeypatch.setattr(text_folder, "_read_texts", lambda files, encoding: read.extend(files) or reader(files, encoding))
    load_texts(d, "train"), load_texts(d, "test")
    assert read and not any("unsup" in f or "unlabeled" in f for f in read)


def test_class_folders_beside_an_unlabeled_folder(tmp_path, capsys):
    """news/CLASS/ + news/unlabeled/: the unlabeled documents are pretraining only, the test split carved from the
    classes (the layout was refused as 'names look like splits')."""
    root = tmp_path / "news"
    for c in ("pos", "neg"):
        for i in range(10):
            _doc(root / c / f"{i}.txt", f"post {i}: the film was {WORDS[c]} ({c})")
    for i in range(5):
        _doc(root / "unlabeled" / f"u{i}.txt", f"an unlabeled post {i} about films")
    d = DataConfig(source="folder", root=str(root))
    pre, train, test = (load_texts(d, s) for s in ("pretrain", "train", "test"))
    assert (f"data.root {root}: 20 documents in 2 classes (neg, pos) + 5 unlabeled (pretraining only); a stratified "
            "20% test split is carved out") in capsys.readouterr().out
    assert train.class_names == ["neg", "pos"] and len(train) == 16 and len(test) == 4
    assert not any("unlabeled" in t for t in train.texts + test.texts)
    assert len(pre) == 16 + 5 and not set(pre.texts) & set(test.texts)


def test_class_folders_only_carve_a_test_split_that_pretraining_never_reads(tmp_path, capsys):
    """20 Newsgroups style: files without a suffix, nested folders, hidden and non-text files; copies of one post in
    two places are held out only together."""
    root = tmp_path / "news"
    for c in ("space", "hockey"):
        for i in range(10):
            _doc(root / c / ("archive" if i % 3 == 0 else "") / f"{60000 + i}", f"post {i} about {WORDS[c]} {c}")
    _doc(root / "space" / "61000", "a crossposted message about the moon and the puck")
    _doc(root / "hockey" / "61000", "a crossposted message about the moon and the puck")
    _doc(root / "space" / ".DS_Store", "junk")
    (root / "space" / "diagram.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    d = DataConfig(source="folder", root=str(root), test_fraction=0.3)
    pre, train, test = (load_texts(d, s) for s in ("pretrain", "train", "test"))
    assert "22 documents in 2 classes (hockey, space); a stratified 30% test split is carved out; skipped files: 1 not " \
        "plain text (.png)" in capsys.readouterr().out
    assert len(train) + len(test) == 22 and len(test) >= 4
    assert sorted(train.ids + test.ids) == sorted(set(train.ids + test.ids))  # a partition
    assert not set(pre.texts) & set(test.texts) and len(pre) == len(train)
    cross = "a crossposted message about the moon and the puck"
    assert test.texts.count(cross) in (0, 2)  # copies together: both held out, or both trained on
    assert any(i.startswith("space/archive/") for i in train.ids + test.ids)  # nested: the class is the first folder


def test_unlabeled_folder_pretrains_on_everything_and_cannot_be_fine_tuned(tmp_path):
    for i in range(5):
        _doc(tmp_path / "notes" / f"note{i}.md", f"# note {i}\nsome words about topic {i}")
    _doc(tmp_path / "notes" / "archive" / "old.md", "an archived note")  # one sub-folder is not a class layout
    d = DataConfig(source="folder", root=str(tmp_path / "notes"))
    assert len(load_texts(d, "pretrain")) == 6
    with pytest.raises(UnlabeledData) as err:
        load_texts(d, "train")
    assert "no class sub-folders" in str(err.value) and "ROOT/CLASS/doc.txt" in str(err.value)


def test_bad_folders_are_named(tmp_path):
    root = tmp_path / "mail"
    for c in ("spam", "ham"):
        for i in range(3):
            _doc(root / c / f"{i}.txt", f"message {i} of {c}")
    _doc(root / "spam" / "3.txt", "caf\u00e9 offer", encoding="cp1252")
    with pytest.raises(UserError) as err:
        load_texts(DataConfig(source="folder", root=str(root)), "train")
    assert f"{root / 'spam' / '3.txt'} is not utf-8 text (byte 0xe9" in str(err.value) and "data.encoding" in str(err.value)
    assert len(load_texts(DataConfig(source="folder", root=str(root), encoding="cp1252", test_fraction=0.5), "train")) == 3

    split = tmp_path / "split"
    for c in ("spam", "ham"):
        _doc(split / "train" / c / "0.txt", f"a message of {c}")
    _doc(split / "test" / "phishing" / "0.txt", "a message of an unknown class")
    with pytest.raises(UserError) as err:
        load_texts(DataConfig(source="folder", root=str(split)), "test")
    assert "phishing" in str(err.value)

    images = tmp_path / "photos"
    (images / "cat").mkdir(parents=True)
    (images / "cat" / "0.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(UserError) as err:
        load_texts(DataConfig(source="folder", root=str(images)), "pretrain")
    assert "no documents found" in str(err.value) and "task=simclr" in str(err.value)
    from ssl_pipeline.data.images import load_images

    with pytest.raises(UserError) as err:  # and the other way round
        load_images(DataConfig(source="folder", root=str(root)), "pretrain")
    assert "no images found" in str(err.value) and "task=mlm" in str(err.value)


def test_folder_of_documents_pretrains_and_fine_tunes_end_to_end(tmp_path, capsys):
    root = tmp_path / "news"
    for c in ("space", "hockey"):
        for i in range(12):
            _doc(root / c / f"{i}.txt", f"post {i} about {WORDS[c]} and more {WORDS[c]} words {i % 3}"
                 + (f" and on {WORDS[c]}" * 12 if i % 4 else ""))  # 3 in 4 longer than the encoder's 32 tokens
    out = tmp_path / "run"
    args = ["--config", "configs/text/mlm_files.yaml", f"data.root={root}", f"output_dir={out}", "pretrain.max_steps=3",
            "pretrain.min_steps=0", "pretrain.batch_size=8", "model.vocab_size=200", "model.num_heads=2",
            "pretrain.mixed_precision=no",  # in-process: a worker's earlier tests fixed Accelerate's state to fp32
            *SMALL_TEXT_MODEL]
    with pytest.raises(SystemExit) as exc:  # a folder is read as it is, not streamed
        pretrain_main(args + ["data.streaming=true"])
    assert exc.value.code == 2 and "set data.streaming=false" in capsys.readouterr().err
    pretrain_main(args)
    finetune_main(args + ["finetune.label_fractions=[1.0]", "finetune.seeds=[0]", "finetune.methods=[finetune,supervised]",
                          "finetune.min_steps=2", "finetune.max_steps=2", "finetune.epochs=1"])
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert doc["class_names"] == ["hockey", "space"] and doc["n_train"] + doc["n_test"] == 24
    assert f"folder {root}" in doc["data"]
    assert {r["method"] for r in doc["rows"]} == {"finetune", "supervised"}
    lengths = doc["input_lengths"]
    assert lengths["max_length"] == 32 and 0.6 < lengths["truncated"] < 0.9 and lengths["median_tokens"] > 32
    assert "Most texts are longer than the encoder reads: " in (out / "label_efficiency.md").read_text()


def test_the_report_says_when_most_texts_are_longer_than_the_encoder_reads():
    from ssl_pipeline.finetune.report import truncation

    assert truncation({"input_lengths": {"max_length": 128, "truncated": 0.4, "median_tokens": 90}}) == []
    assert truncation({"input_lengths": None}) == [] and truncation({}) == []  # vision; reports from before
    said = truncation({"input_lengths": {"max_length": 128, "truncated": 0.92, "median_tokens": 2310}})
    assert said and "92% of the training texts exceed its 128 tokens (median 2,310)" in said[0]


def test_data_notes_come_from_the_first_process_only(tmp_path, capsys, monkeypatch):
    _acl_imdb(tmp_path / "aclImdb")
    d = DataConfig(source="folder", root=str(tmp_path / "aclImdb"))
    monkeypatch.setenv("RANK", "1")  # the second process of `accelerate launch --num_processes 2`
    assert len(load_texts(d, "pretrain")) == 18 and capsys.readouterr().out == ""
    progress._SAID.clear()
    monkeypatch.setenv("RANK", "0")
    load_texts(d, "pretrain")
    assert capsys.readouterr().out.startswith("data.root ")


def test_saved_web_pages_and_e_mails_are_read_as_their_text(tmp_path, capsys):
    """A help desk's export: `.eml` messages (plain, HTML-only, Latin-1 quoted-printable) and saved `.html` pages
    (a head left open, scripts and styles). They were skipped as "not plain text"; now each document is what a
    reader sees: subject and body, title and visible text — no tags, headers, scripts or MIME boundaries."""
    from email.message import EmailMessage

    from ssl_pipeline.data.markup import email_text, html_text

    def message(subject, body, subtype="plain", charset="utf-8"):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "a@example.com", "desk@example.com", subject
        m.set_content(body, subtype=subtype, charset=charset, cte="quoted-printable" if charset != "utf-8" else None)
        return m.as_bytes()

    page = ("<html><head><title>Refund policy</title><style>p {color: red}</style>"
            "<script>var x = '<p>not text</p>';</script><body><h1>Refunds</h1><p>Money back&nbsp;within "
            "<b>30</b> days.</p><ul><li>cards</li><li>vouchers</li></ul></body></html>")
    assert html_text(page) == "Refund policy\nRefunds\nMoney back within 30 days.\ncards\nvouchers"
    site = ("<html><head><title>Refunds - Help</title></head><body><nav><a>Home</a><a>Keyboard shortcuts</a></nav>"
            "<main><h1>Refunds</h1><p>Money back.</p></main><footer>(c) 2026 Shop</footer></body></html>")
    assert html_text(site) == "Refunds - Help\nRefunds\nMoney back."  # the page's own content, not its frame
    assert email_text(message("Crash on start", "The app crashes when I open it.")) == \
        "Crash on start\n\nThe app crashes when I open it."
    assert email_text(message("Facture", "Montant dû: 12 €", charset="iso-8859-15")) == "Facture\n\nMontant dû: 12 €"
    assert email_text(message("Invoice", "<html><body><p>Your <i>invoice</i></p></body></html>", "html")) == \
        "Invoice\n\nYour invoice"
    root = tmp_path / "desk"
    for i in range(6):
        (root / "bugs").mkdir(parents=True, exist_ok=True)
        (root / "bugs" / f"{i}.eml").write_bytes(message(f"crash {i}", f"the app crashes {WORDS['neg']} {i}"))
        _doc(root / "billing" / f"{i}.html", f"<html><body><p>invoice {i} refund {WORDS['pos']}</p></body></html>")
    _doc(root / "billing" / "scan.pdf", "%PDF-1.4")
    cfg = load_config("configs/text/mlm_files.yaml", [f"data.root={root}"]).data
    train, test = load_texts(cfg, "train"), load_texts(cfg, "test")
    assert train.class_names == ["billing", "bugs"] and len(train.texts) + len(test.texts) == 12
    assert all("<" not in t and "Content-Type" not in t and "From:" not in t for t in train.texts + test.texts)
    assert any(t.startswith("crash ") and "\n\nthe app crashes" in t for t in train.texts)
    assert "12 documents in 2 classes (billing, bugs)" in capsys.readouterr().out


def test_many_web_pages_are_parsed_in_worker_processes_to_the_same_texts(tmp_path, monkeypatch):
    """Above MARKUP_PROCESS_THRESHOLD pages and e-mails, parsing (pure Python, ~7 ms a page) runs in spawned worker
    processes: the same texts in the same order as in one process, and a page in the wrong encoding is still the
    one-line error naming it."""
    from ssl_pipeline.data import document_files

    files = []
    for i in range(40):
        files.append(tmp_path / f"{i}.html")
        _doc(files[-1], f"<html><body><h1>page {i}</h1><p>{WORDS['space']} {i}</p><script>x={i}</script></body></html>")
        files.append(tmp_path / f"{i}.txt")
        _doc(files[-1], f"plain note {i}")
    files = [str(f) for f in files]
    alone = document_files.read_documents(files, "utf-8")
    monkeypatch.setattr(document_files, "MARKUP_PROCESS_THRESHOLD", 1)
    assert document_files.read_documents(files, "utf-8") == alone
    assert alone[0] == ("page 0\norbit rocket moon 0", None) and alone[1] == ("plain note 0", None)
    _doc(tmp_path / "bad.html", "<p>caf\u00e9</p>", encoding="latin-1")
    monkeypatch.setattr(text_folder, "_READ", {})
    with pytest.raises(UserError, match=r"bad.html is not utf-8 text \(byte 0xe9 near offset 6\)"):
        text_folder._read_texts(files + [str(tmp_path / "bad.html")], "utf-8")
