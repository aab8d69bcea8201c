"""data.text_column as users' tables need it: several fields joined into one text, the table's one text column when
`text` is not a column, and an error naming the columns when that is ambiguous — files, hub datasets and streams."""
import csv
import json

import pytest

from ssl_pipeline import progress
from ssl_pipeline.config import DataConfig, load_config
from ssl_pipeline.data.text import StreamingBlocks, load_texts, stream_texts, train_tokenizer
from ssl_pipeline.errors import UserError

QUEUES = ("billing", "login", "shipping")


def _tickets(path, n=30, body=lambda i: f"the {QUEUES[i % 3]} page fails on step {i}"):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "Subject", "body", "queue"])
        for i in range(n):
            writer.writerow([i, f"ticket {i} about {QUEUES[i % 3]}", body(i), QUEUES[i % 3]])


def test_several_fields_are_joined_into_each_text_in_every_split(tmp_path, capsys):
    """Tickets keep their text in a subject and a body: data.text_column=[subject,body] reads both (the header's
    case as for one column), one line each, an empty field left out; the carve and pretraining see the joined
    texts, so the test rows stay out of pretraining."""
    path = tmp_path / "tickets.csv"
    _tickets(path, body=lambda i: "" if i == 4 else f"the {QUEUES[i % 3]} page fails on step {i}")
    cfg = load_config("configs/text/mlm_files.yaml", [f"data.files=[{path}]", "data.text_column=[subject,body]",
                                                      "data.label_column=queue"]).data
    assert cfg.text_column == ["subject", "body"]
    progress._SAID.clear()
    train, test, pre = (load_texts(cfg, s) for s in ("train", "test", "pretrain"))
    assert "data.files tickets.csv: 30 texts (subject + body) in 3 classes" in capsys.readouterr().out
    assert len(train) + len(test) == 30 and train.class_names == list(sorted(QUEUES))
    every = dict(zip(train.ids + test.ids, train.texts + test.texts))
    assert every[0] == "ticket 0 about billing\nthe billing page fails on step 0"
    assert every[4] == "ticket 4 about login"  # its body is empty
    assert set(pre.texts) == set(train.texts) and not set(pre.texts) & set(test.texts)
    with pytest.raises(UserError, match=r"^data.text_column 'summary' is not a column of the csv corpus \(columns: "
                                        r"\['id', 'Subject', 'body', 'queue'\]\); set data.text_column"):
        load_texts(load_config("configs/text/mlm_files.yaml", [f"data.files=[{path}]", "data.label_column=queue",
                                                               "data.text_column=[summary,body]"]).data, "train")


def test_the_one_text_column_is_read_when_text_is_not_a_column_and_two_are_not_guessed(tmp_path, capsys):
    """SST-2 calls its text `sentence`, a review export `review`: with the default data.text_column the table's one
    string column besides the labels is the text (said once). Two string columns (a subject and a body) are not
    guessed: the error names the columns and how to join them. A column the user named is never replaced."""
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"id": i, "review": f"{'great' if i % 2 else 'awful'} film {i}",
                                        "label": "pos" if i % 2 else "neg"}) + "\n" for i in range(20)))
    progress._SAID.clear()
    d = DataConfig(source="jsonl", files=[str(path)])
    train, test = load_texts(d, "train"), load_texts(d, "test")
    assert len(train) == 16 and len(test) == 4 and train.class_names == ["neg", "pos"]
    assert train.texts[0].endswith(f"film {train.ids[0]}")
    said = capsys.readouterr().out
    assert said.count("data.text_column 'text' is not a column of the jsonl corpus: reading the texts from its one "
                      "text column, 'review'") == 1
    with pytest.raises(UserError, match=r"data.text_column 'comment' is not a column"):
        load_texts(DataConfig(source="jsonl", files=[str(path)], text_column="comment"), "train")
    tickets = tmp_path / "tickets.csv"
    _tickets(tickets)
    with pytest.raises(UserError, match=r"^data.text_column 'text' is not a column of the csv corpus \(columns: \['id', "
                                        r"'Subject', 'body', 'queue'\]\); set data.text_column to the column holding "
                                        r"the text, or to several to join, e.g. data.text_column=\[title,body\]$"):
        load_texts(DataConfig(source="csv", files=[str(tickets)], label_column="queue"), "train")


def test_hub_datasets_join_fields_in_every_split_and_find_their_one_text_column(tmp_path, capsys):
    """Hub text datasets: dbpedia / amazon_polarity keep `title` + `content`, SST-2 `idx` + `sentence` + `label`."""
    import datasets

    topics = datasets.ClassLabel(names=["art", "sport"])
    feats = datasets.Features({"title": datasets.Value("string"), "content": datasets.Value("string"),
                               "label": topics})

    def split(n, offset):
        return datasets.Dataset.from_dict({"title": [f"title {offset + i}" for i in range(n)],
                                           "content": [f"{'paint' if i % 2 == 0 else 'goal'} {offset + i}"
                                                       for i in range(n)],
                                           "label": [i % 2 for i in range(n)]}, features=feats)

    datasets.DatasetDict({"train": split(12, 0), "test": split(4, 100)}).save_to_disk(str(tmp_path / "dbpedia"))
    d = DataConfig(source="hf", name=str(tmp_path / "dbpedia"), text_column=["title", "content"])
    test, pre = load_texts(d, "test"), load_texts(d, "pretrain")
    assert test.texts[0] == "title 100\npaint 100" and test.class_names == ["art", "sport"]
    assert len(pre) == 12 and pre.texts[1] == "title 1\ngoal 1"
    sst = datasets.Features({"idx": datasets.Value("int32"), "sentence": datasets.Value("string"), "label": topics})
    datasets.Dataset.from_dict({"idx": list(range(20)), "sentence": [f"a {'painting' if i % 2 == 0 else 'match'} {i}"
                                                                     for i in range(20)],
                                "label": [i % 2 for i in range(20)]}, features=sst).to_parquet(str(tmp_path / "s.parquet"))
    progress._SAID.clear()
    capsys.readouterr()
    train = load_texts(DataConfig(source="hf", files=[str(tmp_path / "s.parquet")]), "train")
    assert len(train) == 16 and train.texts[0].startswith("a ")
    assert "reading the texts from its one text column, 'sentence'" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"data.text_column 'text' is not a column of .*\['title', 'content', 'label'\]"):
        load_texts(DataConfig(source="hf", name=str(tmp_path / "dbpedia")), "train")


def test_a_stream_joins_fields_and_finds_its_one_text_column(tmp_path):
    """Streamed rows resolve data.text_column on the first row, as tables do; rows that lack it were skipped one by
    one before, and the run ended in "the stream is empty"."""
    corpus = tmp_path / "tickets.jsonl"
    corpus.write_text("".join(json.dumps({"subject": f"ticket {i}", "body": f"step {i} fails", "stars": i % 5}) + "\n"
                              for i in range(40)))
    tok = train_tokenizer([f"ticket {i} step {i} fails" for i in range(40)], vocab_size=120)
    d = DataConfig(source="jsonl", files=[str(corpus)], streaming=True, text_column=["subject", "body"])
    texts = list(StreamingBlocks(stream_texts(d, 0, 1), tok, d.text_column, 4)._texts())
    assert texts[:2] == ["ticket 0\nstep 0 fails", "ticket 1\nstep 1 fails"] and len(texts) == 40
    with pytest.raises(UserError, match=r"^data.text_column 'text' is not a column of the streamed corpus \(columns: "
                                        r"\['subject', 'body', 'stars'\]\)"):
        next(iter(StreamingBlocks(stream_texts(d, 0, 1), tok, "text", 4)))
    one = tmp_path / "reviews.jsonl"
    one.write_text("".join(json.dumps({"review": f"note {i}", "stars": i % 5}) + "\n" for i in range(50)))
    s = DataConfig(source="jsonl", files=[str(one)], streaming=True)
    assert next(iter(StreamingBlocks(stream_texts(s, 0, 1), tok, s.text_column, 4)))["input_ids"].shape == (4,)


def test_a_csv_without_a_header_row_is_named_and_read_with_csv_columns(tmp_path):
    """AG News and many exports have no header row: its first row was read as the column names, and the error
    listed them as the columns ('2', 'Headline 0', …); a two-column file lost its first text to the header."""
    from ssl_pipeline.data.text import load_texts

    news = tmp_path / "ag.csv"
    news.write_text("".join(f'"{1 + i % 3}","Headline {i}","story {i} about {("markets", "sport", "chips")[i % 3]}"\n'
                            for i in range(30)))
    with pytest.raises(UserError, match=r"^.*ag.csv seems to have no header row: its first row \('1', 'Headline 0', "
                                        r"'story 0 about markets'\) looks like data, not column names; name its 3 "
                                        r"columns with data.csv_columns, in order \(e.g. data.csv_columns=\[label,title,text\]\)"):
        load_texts(DataConfig(source="csv", files=[str(news)]), "train")
    cfg = DataConfig(source="csv", files=[str(news)], csv_columns=["label", "title", "text"], text_column=["title", "text"])
    train, test = load_texts(cfg, "train"), load_texts(cfg, "test")
    assert len(train) + len(test) == 30 and train.class_names == ["1", "2", "3"]  # the first row is data
    assert "Headline 0\nstory 0 about markets" in train.texts + test.texts
    with pytest.raises(UserError, match=r"data.csv_columns names 2 columns \(label, text\) but .*ag.csv has 3 fields in "
                                        r"its first row"):  # pandas would have made the first field an index
        load_texts(DataConfig(source="csv", files=[str(news)], csv_columns=["label", "text"]), "train")
    pairs = tmp_path / "pairs.csv"  # two columns, the label name recurring as a value
    pairs.write_text("".join(f"review number {i},{('pos', 'neg')[i % 2]}\n" for i in range(20)))
    with pytest.raises(UserError, match=r"pairs.csv seems to have no header row.*data.csv_columns=\[label,text\]"):
        load_texts(DataConfig(source="csv", files=[str(pairs)]), "train")
    named = DataConfig(source="csv", files=[str(pairs)], csv_columns=["text", "label"])
    assert len(load_texts(named, "pretrain")) + len(load_texts(named, "test")) == 20  # the first row is a text
    headed = tmp_path / "reviews.csv"  # a header whose text column is not called text: read as before
    headed.write_text("review,category\n" + "".join(f"review number {i},{('pos', 'neg')[i % 2]}\n" for i in range(20)))
    headed_cfg = DataConfig(source="csv", files=[str(headed)], label_column="category")
    assert len(load_texts(headed_cfg, "pretrain")) + len(load_texts(headed_cfg, "test")) == 20
    lines = tmp_path / "x.jsonl"
    lines.write_text('{"text": "a", "label": "b"}\n')
    with pytest.raises(UserError, match="data.csv_columns names the columns of csv/tsv files without a header row"):
        load_texts(DataConfig(source="jsonl", files=[str(lines)], csv_columns=["a"]), "train")


def test_nested_json_fields_are_columns_named_by_their_path(tmp_path, capsys):
    """Exports nest fields (`{"content": {"title": …}, "annotation": {"label": …}}`): the objects were the columns
    and no data.text_column could reach the text."""
    from ssl_pipeline.data.text import load_texts

    rows = tmp_path / "n.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "content": {"title": f"title {i}", "body": f"body {i} on {q}"},
                                        "annotation": {"label": q, "by": "a1"}}) + "\n"
                            for i, q in enumerate(QUEUES * 10)))
    progress._SAID.clear()
    with pytest.raises(UserError, match=r"columns: \['id', 'content.title', 'content.body', 'annotation.label', "
                                        r"'annotation.by'\]"):
        load_texts(DataConfig(source="jsonl", files=[str(rows)]), "train")
    assert ("n.jsonl: nested fields are read as columns named by their path (content.title, content.body, "
            "annotation.label, annotation.by); data.text_column and data.label_column can name them") in capsys.readouterr().out
    cfg = DataConfig(source="jsonl", files=[str(rows)], text_column=["content.title", "content.body"],
                     label_column="annotation.label")
    train = load_texts(cfg, "train")
    assert train.class_names == list(QUEUES) and "title 0\nbody 0 on billing" in train.texts + load_texts(cfg, "test").texts


def test_image_cells_stored_as_bytes_and_path_are_not_flattened():
    """A JSON table of image cells ({"image": {"path": ...}, ...}) keeps its image column whole: image tables read
    {bytes, path} cells as images (flattening made them `image.path`, and data.image_column missed them)."""
    import datasets

    from ssl_pipeline.data.text_files import flat

    cells = datasets.Dataset.from_list([{"image": {"bytes": None, "path": f"img/{i}.png"}, "meta": {"label": "cat"}}
                                        for i in range(3)])
    assert flat(cells, ["t.json"]).column_names == ["image", "meta"]
    nested = datasets.Dataset.from_list([{"meta": {"label": "cat", "text": "a cat"}}])
    assert flat(nested, ["t.json"]).column_names == ["meta.label", "meta.text"]
