"""The README embeds the config schema verbatim: documentation cannot drift from the code."""
from ssl_pipeline.config import describe_schema

from conftest import ROOT


def test_readme_config_table_matches_schema():
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- schema:start -->", "<!-- schema:end -->"
    assert start in readme and end in readme
    table = readme.split(start)[1].split(end)[0].strip()
    assert table == describe_schema().strip(), "run `make docs` to refresh the README's configuration table"


def test_readme_quickstart_and_ci():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
