"""The built-in default: EfficientNet-Lite0 (packaged ImageNet weights) on foolbox's 20 labelled photos.

Real weights and real photos, no GPU, no download. The photos are put into class folders by the
same code as format_dataset.py, exported to ONNX, validated with PyTorch fp32 and ONNX Runtime fp32.

Usage:
    python main.py --demo
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List

from utils.errors import ArtTRTError

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


def foolbox_photo_dir() -> Path:
    try:
        import foolbox  # noqa: F401  (the package only carries the photos for us)
    except ImportError as err:
        raise ArtTRTError("the demo photos ship with foolbox: pip install foolbox==3.3.4") from err
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.origin is not None
    folder = Path(spec.origin).parent / "data"
    if not any(folder.glob("imagenet_*.jpg")):
        raise ArtTRTError(f"foolbox's ImageNet photos are not in {folder}: reinstall foolbox==3.3.4")
    return folder


def demo_dataset(dst: Path) -> Path:
    """Links foolbox's imagenet_<i>_<label>.jpg photos into dst/<wnid>/ (a re-run changes nothing)."""
    import shutil
    import tempfile

    from utils.dataset_format import apply_plan, make_plan

    src = foolbox_photo_dir()
    # foolbox's data folder also holds CIFAR/MNIST images: plan over the ImageNet photos only.
    with tempfile.TemporaryDirectory() as tmp:
        for f in sorted(src.glob("imagenet_*.jpg")):
            shutil.copy2(f, Path(tmp) / f.name)
        plan = make_plan(Path(tmp))
        summary = apply_plan(plan, dst, mode="copy")
    if summary.unplaced:
        raise ArtTRTError(f"could not place demo photos: {summary.unplaced[:3]}")
    return dst


def run_demo(output: Path, quiet: bool = False) -> int:
    from utils.datasets import open_dataset
    from utils.measure import MeasureOptions
    from utils.networks import load_network
    from utils.pipeline import RunSpec, validate_one
    from utils.tables import results_table

    data = demo_dataset(ROOT / "datasets" / "demo")
    net = load_network("efficientnet_lite0", pretrained=True)
    ds = open_dataset(data, net.preprocess, net.num_classes)
    opts = MeasureOptions(batch_size=1, progress=not quiet)
    records, preds = [], []
    for backend in ("torch", "onnxrt"):
        rec, res = validate_one(RunSpec(backend, "fp32"), net, ds, opts, output / "demo", 1000)
        records.append(rec)
        preds.append(res.predictions)
    same = sum(preds[0][i] == preds[1][i] for i in preds[0])
    lines: List[str] = [results_table(records), "",
                        f"EfficientNet-Lite0 (packaged ImageNet weights), {len(ds)} foolbox photos: "
                        f"top-1 {_count(records[0], 'top1')} / {_count(records[1], 'top1')}, "
                        f"top-5 {_count(records[0], 'top5')} / {_count(records[1], 'top5')} (PyTorch / ONNX Runtime); "
                        f"same top-1 class on {same} of {len(preds[0])} photos.",
                        f"Records: {output / 'demo' / 'records'}"]
    print("\n".join(lines))
    return 0 if same == len(preds[0]) else 1


def _count(rec: dict, key: str) -> str:
    n = rec["labelled_images"]
    return f"{round(rec[key] * n / 100)} of {n}"
