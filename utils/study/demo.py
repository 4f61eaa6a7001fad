"""The built-in default: EfficientNet-Lite0 (packaged ImageNet weights) on foolbox's 20 labelled photos.

Real weights and real photos, no GPU, no download. The photos are put into class folders by the
same code as format_dataset.py, exported to ONNX, validated with PyTorch fp32 and ONNX Runtime fp32.

Usage:
    python main.py --demo
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from utils.backends.base import RunSpec
from utils.core.confidence import paired_change
from utils.data.imagenet import readable_class_names
from utils.data.options import DataOptions
from utils.data.photos import demo_dataset
from utils.measure.measurement import MeasureOptions
from utils.models import networks
from utils.report.records import Recorder
from utils.report.report import make_report
from utils.report.schema import Record
from utils.report.sections.results_tables import results_table
from utils.report.terminal import fit_terminal, terminal_width
from utils.study.agreement import top1_agreement
from utils.study.validate import validate_one

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent.parent


def run_demo(output: Path, quiet: bool = False, command: Optional[str] = None) -> int:
    folder = Path(os.environ.get("ARTTRT_DATASETS_DIR", ROOT / "datasets")) / "demo"  # tests point it elsewhere
    data = DataOptions(dataset=str(demo_dataset(folder)), progress=not quiet)
    net = networks.load_network("efficientnet_lite0", pretrained=True)
    ds = data.open(net.preprocess, net.num_classes)
    opts = MeasureOptions(batch_size=1, progress=not quiet)
    recorder = Recorder(output / "demo", command)

    records, preds = [], []
    names = readable_class_names(ds.meta.get("class_names"))
    for backend in ("torch", "onnxrt"):  # PyTorch first: each record says how often its top-1 is PyTorch's
        rec, res = validate_one(RunSpec(backend, "fp32"), net, ds, opts, data=data, recorder=recorder,
                                on_result=lambda r: _against_first(r, preds, names))
        records.append(rec)
        preds.append(res.predictions)
    # the report's "same top-1 as Vanilla" column and this line are one figure, the record's
    same = round((records[1].agree_top1_percent or 0.0) * (records[1].agree_top1_images or 0) / 100)
    lines: List[str] = [fit_terminal(results_table(records), terminal_width()), "",
                        f"EfficientNet-Lite0 (packaged ImageNet weights), {len(ds)} foolbox photos: "
                        f"top-1 {_count(records[0], 'top1')} / {_count(records[1], 'top1')}, "
                        f"top-5 {_count(records[0], 'top5')} / {_count(records[1], 'top5')} "
                        f"(Vanilla / ONNX Runtime fp32); "
                        f"same top-1 class on {same} of {len(preds[0])} photos; ONNX Runtime against Vanilla, "
                        f"paired: {records[1].paired_verdict or 'not computed'}."]

    make_report(output / "demo")
    lines += [f"records: {output / 'demo' / 'records'}", f"report: {output / 'demo' / 'report.html'}"]
    print("\n".join(lines))
    return 0 if same == len(preds[0]) else 1


def _against_first(result: Any, preds: List[Any], names: Optional[List[str]]) -> Dict[str, Any]:
    """The fields of a run measured against the first (PyTorch): how often its top-1 is the same, and the paired
    change of its top-1 on the same photos (utils.core.confidence)."""
    ref = (preds or [result.predictions])[0]
    out = top1_agreement(result.predictions, ref) or {}
    if preds:
        out.update(paired_change(result.predictions, ref, result.labels, names) or {})
    return out


def _count(rec: Record, key: str) -> str:
    n = int(rec.labelled_images or 0)
    return f"{round(float(getattr(rec, key) or 0.0) * n / 100)} of {n}"
