"""What main.py --compare does, as a function: a reference runner and another see the same inputs; the
comparison's tables, flipped images and record are written under the output folder.

Usage:
    rec, stats, text = compare_one(RunSpec("torch", "fp32"), RunSpec("onnxrt", "int8"), net, ds, batch_size=32,
                             rtol=1e-3, atol=1e-8, data=DataOptions(dataset="datasets/demo"),
                             recorder=Recorder(Path("outputs")), inputs_source="dataset")
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from utils.backends.base import RunSpec, device_scope
from utils.backends.registry import make_runner, spec_label
from utils.core.fileio import atomic_write_text
from utils.data.cache import CachedDataset
from utils.data.imagenet import imagenet_classes
from utils.data.options import DataOptions
from utils.measure.compare import CompareStats, compare_runners
from utils.models.networks import Network
from utils.report.records import Recorder, make_record
from utils.report.sections.compare_tables import compare_markdown, flips_csv
from utils.study.identity import record_identity

log = logging.getLogger(__name__)


def class_names_for(dataset: CachedDataset, num_classes: int) -> Optional[List[str]]:
    """Readable class names: ImageNet's for ImageNet wnid folders or a 1000-class network, else the folders'."""
    names = dataset.meta.get("class_names")
    if names == imagenet_classes().wnids or (names is None and num_classes == 1000):
        return imagenet_classes().names
    return list(names) if names else None


def compare_one(ref_spec: RunSpec, other_spec: RunSpec, net: Network, dataset: CachedDataset, *, batch_size: int,
                rtol: float, atol: float, data: DataOptions = DataOptions(), recorder: Recorder = Recorder(),
                limit: Optional[int] = None, inputs_source: str = "dataset",
                progress: bool = True) -> Tuple[Dict[str, Any], CompareStats, str]:
    """Runs both specs over the same batches; writes the record, tables and flips CSV (prints nothing).

    Returns:
        (record, statistics, the Markdown tables).
    """
    with device_scope(other_spec.device):
        return _compare(ref_spec, other_spec, net, dataset, batch_size, rtol, atol, data, recorder, limit,
                        inputs_source, progress)


def _compare(ref_spec: RunSpec, other_spec: RunSpec, net: Network, dataset: CachedDataset, batch_size: int,
             rtol: float, atol: float, data: DataOptions, recorder: Recorder, limit: Optional[int],
             inputs_source: str, progress: bool) -> Tuple[Dict[str, Any], CompareStats, str]:
    ref, _ = make_runner(ref_spec, net, data, batch_size)
    other, _ = make_runner(other_spec, net, data, batch_size)
    with ref, other:
        stats = compare_runners(ref, other, dataset, batch_size, rtol, atol, limit=limit,
                                class_names=class_names_for(dataset, net.num_classes), progress=progress)
        other_info = other.info()
    # the runners named as every table names them (row_label: "Vanilla", "ONNX Runtime int8 (cpu)"), the network too
    text = compare_markdown(stats, spec_label(ref_spec), spec_label(other_spec), net.name)
    rec = recorder.write(make_record("compare", recorder.command,
                                     **record_identity(net, other_spec, dataset, other.device, batch_size),
                                     reference=f"{ref_spec.backend}-{ref_spec.precision}", inputs_source=inputs_source,
                                     **stats.summary(), other_facts=other_info))
    if recorder.folder is not None:
        stem = Path(rec.path).stem
        atomic_write_text(recorder.folder / "compare" / f"{stem}.md", text)
        if stats.flips:
            atomic_write_text(recorder.folder / "compare" / f"{stem}-flips.csv", flips_csv(stats))
        log.info("comparison written to %s and %s", rec.path, recorder.folder / "compare" / f"{stem}.md")
    return rec, stats, text
