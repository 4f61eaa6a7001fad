"""validate_one: a record per batch size with the same predictions; an interrupted sweep keeps its records."""
from __future__ import annotations

import pytest
import json
from pathlib import Path

import numpy as np

import main
from utils.backends.base import RunSpec
from utils.core.errors import cli_boundary
from utils.data.cache import open_dataset
from utils.measure.measurement import MeasureOptions
from utils.report.records import Recorder
from utils.study.validate import validate_one


def test_validate_records_per_batch_size(demo_data, lite0, tmp_path):
    ds = open_dataset(demo_data, lite0.preprocess)
    preds = {}
    for bs in (1, 8):
        rec, res = validate_one(RunSpec("onnxrt", "fp32"), lite0, ds, MeasureOptions(batch_size=bs, progress=False),
                                recorder=Recorder(tmp_path))
        assert rec.top1 == 85.0 and rec.batch_size == bs
        preds[bs] = res.predictions
        assert Path(str(rec.path)).is_file()
    assert np.array_equal(preds[1], preds[8]) and (preds[1] >= 0).all()  # batching changes no prediction
    # bs 8 over 20 images: 2 full batches, int(0.1*2)=0 warm-up batches, the short batch of 4 untimed
    assert rec.latency_all_batches == 2 and rec.timed_images == 16 and rec.images == 20
    assert rec.short_batch == {"images": 4, "handling": "run after the timed batches, for accuracy only"}
    # who and what: the dataset's content key and size, the weights
    assert rec.dataset_key == ds.meta["key"] and rec.dataset_images == 20
    assert rec.weights.startswith("packaged:") and rec.weights_id == "model:" + lite0.content_key()[:20]


@pytest.mark.slow
def test_interrupted_sweep_keeps_finished_records(tmp_path, monkeypatch):
    import utils.study.validate as validate

    real = validate.measure_with
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(validate, "measure_with", flaky)
    argv = ["-v", "--network", "resnet18", "--synthetic", "4", "--batch_sizes", "1", "2", "--duration", "0",
            "--output", str(tmp_path), "--quiet"]
    rc = cli_boundary(main.main, argv)
    assert rc == 130
    recs = list((tmp_path / "records").glob("*.json"))  # the accuracy pass (largest batch) was done: kept
    first = json.loads(recs[0].read_text())
    assert len(recs) == 1 and first["batch_size"] == 2 and first["role"] == "accuracy"
    assert not list((tmp_path / "records").glob("*.part"))
    # the rerun measures only what is missing, and its timing records take the kept accuracy pass's figures
    monkeypatch.setattr(validate, "measure_with", real)
    assert cli_boundary(main.main, argv) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert sorted((r["role"], r["batch_size"]) for r in recs) == [("accuracy", 2), ("timing", 1), ("timing", 2)]
    assert all(r["accuracy_from"]["job_key"] == first["job_key"] for r in recs if r["role"] == "timing")
    assert not list((tmp_path / "records").glob("*.part"))
