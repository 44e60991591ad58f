#!/usr/bin/env python3
"""Peak resident memory of reading an ImageFolder in batches versus all at once.

Writes N random 32x32 RGB PNGs in 10 class folders (or reuses --dir), then reads them in a fresh
subprocess per mode with toolkit.datasets.open_data("imagefolder:DIR", ...): `batches` iterates
.batches(256); `load_all` holds every image (float32 NCHW) at once. Each child reports its peak RSS
(ru_maxrss) after importing the toolkit and after reading; the median of --repeat runs is printed.

    .venv/bin/python scripts/measure_imagefolder_rss.py --images 10000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys
import numpy as np
from PIL import Image  # imported before the baseline: both modes decode with it
from toolkit.datasets import open_data
from toolkit.spec import ModelSpec, Task, TensorSpec

spec = ModelSpec("m", (TensorSpec("input", "float32", (-1, 3, 32, 32)),), (TensorSpec("logits", "float32", (-1, 10)),),
                 Task("classification", num_classes=10))
data = open_data("imagefolder:" + sys.argv[1], spec)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = 0
if sys.argv[2] == "batches":
    for feeds, labels in data.batches(256):
        count += len(labels)
else:
    feeds, labels = data.load_all()
    count = len(labels)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"images": count, "baseline_kib": before, "peak_kib": after}))
"""


def write_folder(root: Path, images: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"class_{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")


def measure(root: Path, mode: str) -> dict:
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="an existing ImageFolder of 32x32 RGB images to read instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        if args.dir is None:
            write_folder(root, args.images)
        rows = {}
        for mode in ("batches", "load_all"):
            runs = [measure(root, mode) for _ in range(args.repeat)]
            rows[mode] = {key: statistics.median(r[key] for r in runs) for key in ("images", "baseline_kib", "peak_kib")}
    print(f"{'mode':<10} {'images':>8} {'RSS after import (MiB)':>22} {'peak RSS (MiB)':>15} {'growth (MiB)':>13}")
    for mode, row in rows.items():
        growth = (row["peak_kib"] - row["baseline_kib"]) / 1024
        print(f"{mode:<10} {int(row['images']):>8} {row['baseline_kib'] / 1024:>22.1f} {row['peak_kib'] / 1024:>15.1f} {growth:>13.1f}")
    batches, whole = rows["batches"], rows["load_all"]
    ratio = (whole["peak_kib"] - whole["baseline_kib"]) / max(1, batches["peak_kib"] - batches["baseline_kib"])
    print(f"load_all grows the peak {ratio:.1f}x as much as batches(256) (median of {args.repeat} runs each)")


if __name__ == "__main__":
    main()
