"""CPU figures through the command line only, to compare two versions of ArtTRT (a benchmark, not a test).

Runs main.py as a user would (so the same script measures the code before and after a restructuring)
and prints, as the median of --repeat runs:
  - images/s and latency-model mean of PyTorch and ONNX Runtime fp32 resnet18 (random weights) at batch
    1 and 32 on seeded random images (the harness on the CPU);
  - the wall time of `main.py --demo` (export cached after the first run);
  - the wall time of a first pass (decode into the cache) and of a cached run over a JPEG folder;
  - the wall time of `--compare` on random inputs.

With --repos, the same figures are taken from several checkouts (say the commit before a change and this
one), interleaved run by run so that both see the same machine load.

Usage:
    python benchmarks/cpu_figures.py [--repeat 3] [--out FILE.json]
    git worktree add /tmp/before HEAD~1 && python benchmarks/cpu_figures.py --repos /tmp/before .
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], env: dict, repo: Path = ROOT) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "main.py", *argv], cwd=repo, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"main.py {' '.join(argv)} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def whole_passes(repo: Path) -> list[str]:
    """--full_passes where the checkout has it (since the study, a sweep times bounded runs): the same figures
    in every checkout compared."""
    return ["--full_passes"] if "--full_passes" in (repo / "main.py").read_text() else []


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "records").glob("*.json"))]


def jpeg_folder(dst: Path, n: int) -> Path:
    """n JPEGs of 400-500 x 300-375 cut from foolbox's photos, in 4 ImageNet class folders."""
    import numpy as np
    from PIL import Image

    from utils.data.photos import foolbox_photo_dir

    photos = [Image.open(p).convert("RGB") for p in sorted(foolbox_photo_dir().glob("imagenet_*.jpg"))]
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = int(rng.integers(400, 501)), int(rng.integers(300, 376))
        img = photos[i % len(photos)].resize((w, h))
        d = dst / ["n01440764", "n01443537", "n01484850", "n01491361"][i % 4]
        d.mkdir(parents=True, exist_ok=True)
        img.save(d / f"img{i:05d}.JPEG", quality=90)
    return dst


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--images", type=int, default=320, help="random images per validation run")
    p.add_argument("--jpegs", type=int, default=600, help="JPEGs in the first-pass folder")
    p.add_argument("--repos", nargs="+", type=Path, default=[ROOT], help="checkouts to measure, interleaved")
    p.add_argument("--out", help="write the figures as JSON here too")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    by_repo: dict[str, dict[str, list[float]]] = {str(r): {} for r in args.repos}

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        photos = jpeg_folder(t / "jpegs", args.jpegs)
        for rep in range(args.repeat):
            for i, repo in enumerate(args.repos):
                figures = by_repo[str(repo)]

                def add(key: str, value: float) -> None:
                    figures.setdefault(key, []).append(value)

                w = t / f"r{i}"
                env = {**os.environ, "ARTTRT_WEIGHTS_DIR": str(w / "weights"), "CI": "true"}
                if rep == 0:  # export once, outside the figures
                    run(["--demo", "--quiet", "--output", str(w / "warm")], env, repo)
                out = w / f"v{rep}"
                add("validate_wall_s", run(["-v", "--network", "resnet18", "--synthetic", str(args.images),
                                            "--batch_sizes", "1", "32", "--backends", "torch", "onnxrt", "--quiet",
                                            *whole_passes(repo), "--output", str(out)], env, repo))
                for r in records(out):
                    tag = f"{r['backend']}_bs{r['batch_size']}"
                    add(f"{tag}_images_per_s", r["images_per_s"])
                    add(f"{tag}_latency_model_ms", r["latency_model_mean"])
                add("demo_wall_s", run(["--demo", "--quiet", "--output", str(w / f"d{rep}")], env, repo))
                cache = w / f"cache{rep}"
                data_args = ["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(photos),
                             "--batch_size", "32", "--cache_dir", str(cache), "--workers", "2", "--quiet"]
                add("first_pass_run_wall_s", run(data_args + ["--output", str(w / f"f{rep}")], env, repo))
                add("cached_run_wall_s", run(data_args + ["--output", str(w / f"c{rep}")], env, repo))
                add("compare_wall_s", run(["--compare", "--network", "resnet18", "--backend", "onnxrt",
                                           "--num_inputs", "256", "--batch_size", "32", "--quiet", "--output",
                                           str(w / f"k{rep}")], env, repo))
    medians = {repo: {k: round(statistics.median(v), 3) for k, v in figs.items()} for repo, figs in by_repo.items()}
    keys = list(next(iter(medians.values())))
    width = max(len(k) for k in keys)
    print(f"{'median of ' + str(args.repeat):<{width}}  " + "  ".join(f"{Path(r).resolve().name[-14:]:>14}" for r in medians))
    for k in keys:
        print(f"{k:<{width}}  " + "  ".join(f"{medians[r].get(k, float('nan')):>14.3f}" for r in medians))
    if args.out:
        Path(args.out).write_text(json.dumps({"median": medians, "runs": by_repo}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
