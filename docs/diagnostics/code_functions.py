"""An unseen text table for trying the shipped text config the way a new user would: the source of functions of
eight installed packages (3 to 60 lines each, up to 450 a package, from 200 random files of each), labelled by
package with 70 % of the labels left blank, as one CSV (`code`, `package`). Used by README "Unseen data".

    python docs/diagnostics/code_functions.py .venv/lib/python3.11/site-packages data/functions.csv
"""
import ast
import csv
import random
import sys
from pathlib import Path

PACKAGES = ["torch", "transformers", "sklearn", "matplotlib", "datasets", "numpy", "pandas", "scipy"]


def functions(package_dir: Path) -> list[str]:
    found = []
    files = sorted(package_dir.rglob("*.py"))
    random.shuffle(files)
    for f in files[:200]:
        if "test" in f.parts or f.name.startswith("test"):
            continue
        try:
            src = f.read_text(encoding="utf-8")
            tree = ast.parse(src)
        except Exception:  # not UTF-8, or a syntax of another Python: skipped
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                seg = ast.get_source_segment(src, node)
                if seg and 3 <= seg.count("\n") <= 60:
                    found.append(seg)
    return found


def main(site: Path, out: str) -> None:
    random.seed(0)
    rows = []
    for pkg in PACKAGES:
        funcs = functions(site / pkg)
        random.shuffle(funcs)
        rows += [(seg, pkg if random.random() < 0.3 else "") for seg in funcs[:450]]
    random.shuffle(rows)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["code", "package"])
        writer.writerows(rows)
    print(f"{len(rows)} functions, {sum(1 for _, p in rows if p)} labelled")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
