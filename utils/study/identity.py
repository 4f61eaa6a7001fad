"""What a record measured, in one place for every kind of record (a timing or accuracy job, a serving scenario, a
comparison): the network and its weights (by content), the runner (backend, precision, options, device), the batch,
and the images (by content key). A table tells rows apart and a rerun finds a job done by these fields alone.

Usage:
    fields = record_identity(net, spec, dataset, runner.device, batch_size)
"""
from __future__ import annotations

from typing import Any, Dict

from utils.backends.base import RunSpec
from utils.backends.registry import options_label
from utils.data.cache import CachedDataset
from utils.models.networks import Network
from utils.models.paths import weights_id


def record_identity(net: Network, spec: RunSpec, dataset: CachedDataset, device: Any, batch_size: int
                    ) -> Dict[str, Any]:
    """The identity fields of a record of `spec` on `net` over `dataset`, run on `device` at `batch_size`."""
    return {"network": net.name, "weights": net.weights, "weights_id": weights_id(net), "backend": spec.backend,
            "precision": spec.precision, "options": options_label(spec), "device": str(device),
            "batch_size": batch_size, "dataset": dataset.meta.get("root", "synthetic"),
            "dataset_key": dataset.meta.get("key") or dataset.meta.get("root"), "dataset_images": len(dataset)}
