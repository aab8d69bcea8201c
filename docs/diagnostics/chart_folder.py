"""A folder of chart images as a user with few labels might have one: `train/KIND/` (40 a kind), `unlabeled/` (2,400)
and `test/KIND/` (100 a kind) for six kinds of matplotlib chart, with random data, sizes and styles; 40 % of the files
are JPEG bytes behind a `.png` name, as downloads often are. Used by README "Unseen data".

    python docs/diagnostics/chart_folder.py data/charts
"""
import os
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KINDS = ["line", "bar", "scatter", "histogram", "pie", "boxplot"]
STYLES = ["default", "ggplot", "seaborn-v0_8", "bmh", "fivethirtyeight", "grayscale", "dark_background", "classic"]
PER_KIND = {"train": 40, "test": 100, "unlabeled": 400}


def draw(kind: str, path: str, rng: np.random.Generator) -> None:
    with plt.style.context(rng.choice(STYLES)):
        fig, ax = plt.subplots(figsize=(rng.uniform(3, 6), rng.uniform(2.2, 4.5)), dpi=int(rng.integers(40, 80)))
        n = int(rng.integers(3, 12))
        if kind == "line":
            for _ in range(int(rng.integers(1, 4))):
                ax.plot(np.cumsum(rng.normal(size=int(rng.integers(10, 200)))), lw=rng.uniform(0.8, 3))
        elif kind == "bar":
            (ax.barh if rng.random() < 0.3 else ax.bar)(range(n), rng.uniform(1, 10, n))
        elif kind == "scatter":
            m = int(rng.integers(20, 400))
            x = rng.normal(size=m)
            ax.scatter(x, x * rng.normal() + rng.normal(size=m), s=rng.uniform(3, 40), alpha=rng.uniform(0.4, 1))
        elif kind == "histogram":
            ax.hist(rng.normal(size=int(rng.integers(100, 3000))) * rng.uniform(0.5, 3), bins=int(rng.integers(8, 50)))
        elif kind == "pie":
            ax.pie(rng.uniform(1, 10, min(n, 7)), startangle=rng.uniform(0, 360))
        else:
            ax.boxplot([rng.normal(size=50) * rng.uniform(0.5, 2) for _ in range(min(n, 6))])
        if rng.random() < 0.5:
            ax.set_title(rng.choice(["Sales", "Q3 results", "Latency", "Users by region", "Errors"]))
        fig.savefig(path, format="jpg" if rng.random() < 0.4 else "png")
        plt.close(fig)


def main(root: str) -> None:
    rng = np.random.default_rng(0)
    for split, per in PER_KIND.items():
        for kind in KINDS:
            folder = os.path.join(root, split, kind if split != "unlabeled" else "")
            os.makedirs(folder, exist_ok=True)
            for i in range(per):
                stem = f"{kind}_{i:04d}" if split != "unlabeled" else f"chart_{kind[:2]}{i:04d}"
                draw(kind, os.path.join(folder, stem + ".png"), rng)


if __name__ == "__main__":
    main(sys.argv[1])
