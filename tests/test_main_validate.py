"""main.py -v and --demo end to end on the packaged photos and weights, and its one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import main
from utils.datasets import open_dataset
from utils.errors import cli_boundary
from utils.measure import MeasureOptions
from utils.pipeline import RunSpec, validate_one


def test_demo_figures(tmp_path, capsys):
    """The README's first command: 17 of 20 top-1, 19 of 20 top-5, same top-1 on every photo."""
    assert main.main(["--demo", "--quiet", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "top-1 17 of 20 / 17 of 20, top-5 19 of 20 / 19 of 20" in out
    assert "same top-1 class on 20 of 20 photos" in out
    recs = [json.loads(p.read_text()) for p in (tmp_path / "demo" / "records").glob("*.json")]
    assert {r["backend"] for r in recs} == {"torch", "onnxrt"}
    for r in recs:
        assert r["top1"] == 85.0 and r["top5"] == 95.0 and r["images"] == 20
        assert r["latency_all_batches"] == 18 and r["warmup_batches"] == 2  # 10 % warm-up
        assert 0 < r["latency_model_mean"] <= r["latency_all_mean"]
        assert r["latency_model_max"] >= r["latency_model_mean"]
        assert r["params"] > 4_000_000 and r["size_mb"] > 15 and r["layers"] > 50
        assert r["env"]["torch"] == torch.__version__ and "main.py" in r["command"]


def test_validate_records_per_batch_size(demo_data, lite0, tmp_path):
    ds = open_dataset(demo_data, lite0.preprocess)
    preds = {}
    for bs in (1, 8):
        rec, res = validate_one(RunSpec("onnxrt", "fp32"), lite0, ds, MeasureOptions(batch_size=bs, progress=False),
                                tmp_path, 1000)
        assert rec["top1"] == 85.0 and rec["batch_size"] == bs
        preds[bs] = res.predictions
        assert Path(rec["_path"]).is_file()
    assert preds[1] == preds[8]  # batching changes no prediction
    # bs 8 over 20 images: 3 batches, int(0.1*3)=0 warm-up batches, the short last batch left out of latency
    assert rec["latency_all_batches"] == 2 and rec["timed_images"] == 20


def test_validate_cli_with_torch_and_onnxrt(demo_data, tmp_path, capsys):
    rc = main.main(["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data),
                    "--batch_size", "4", "--backends", "torch", "onnxrt", "--output", str(tmp_path), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| efficientnet_lite0 | Vanilla | 4 |" in out and "ONNX Runtime fp32 (cpu)" in out
    assert "p50 / p90 / p99" in out


@pytest.mark.parametrize("argv, message", [
    (["-v", "--network", "resnet18", "--dataset", "/no/such/folder"], "does not exist"),
    (["-v", "--network", "resnet18"], "pass --dataset"),
    (["-v", "--network", "resnet18", "--synthetic", "4", "--precision", "fp16"], "CUDA"),
    (["-v", "--network", "resnet18", "--synthetic", "4", "-trt"], "TensorRT is not installed: pip install tensorrt-cu13"),
    (["-v", "--network", "resnet18", "--synthetic", "4", "--device", "cuda"], "no CUDA GPU"),
])
def test_bad_input_is_one_sentence(argv, message, tmp_path, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc = cli_boundary(main.main, argv + ["--output", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_class_count_mismatch(demo_data, tmp_path, capsys):
    import torchvision

    w = tmp_path / "ten.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), w)
    rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--weights", str(w), "--dataset", str(demo_data),
                                  "--output", str(tmp_path), "--quiet"])
    assert rc == 2 and "10 outputs" in capsys.readouterr().err


def test_onnx_input_size_mismatch(demo_data, lite0, tmp_path, capsys):
    from utils.onnx_export import export_onnx

    onnx_file = tmp_path / "small.onnx"
    from utils.networks import load_network

    export_onnx(load_network("resnet18"), onnx_file, (-1, 3, 160, 160))
    rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--backend", "onnxrt", "--onnx", str(onnx_file),
                                  "--dataset", str(demo_data), "--output", str(tmp_path), "--quiet"])
    assert rc == 2 and "takes input [-1, 3, 160, 160]" in capsys.readouterr().err


def test_synthetic_timing_run_has_no_accuracy(tmp_path, capsys):
    rc = main.main(["-v", "--network", "resnet18", "--synthetic", "6", "--batch_sizes", "1", "3",
                    "--output", str(tmp_path), "--quiet"])
    assert rc == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert sorted(r["batch_size"] for r in recs) == [1, 3]
    assert all(r["top1"] is None and r["images"] == 6 and r["images_per_s"] > 0 for r in recs)
