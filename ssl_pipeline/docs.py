"""`make docs`: refresh the README's configuration table from the schema (config.py is the one source)."""
from pathlib import Path

from .config import describe_schema

START, END = "<!-- schema:start -->", "<!-- schema:end -->"


def main() -> None:
    path = Path(__file__).resolve().parents[1] / "README.md"
    text = path.read_text()
    head, rest = text.split(START)
    _, tail = rest.split(END)
    path.write_text(f"{head}{START}\n{describe_schema()}\n{END}{tail}")


if __name__ == "__main__":
    main()
