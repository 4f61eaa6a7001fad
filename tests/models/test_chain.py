"""The model half of the artefact chain: a user's ONNX file that already carries the precision asked is used
as it is (every backend, as build_trt.py does), one that carries another is refused, and int8 calibration
goes through the same data options as validation (a --class_map dataset works)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import main
from utils.core.errors import ArtTRTError, cli_boundary
from utils.data.options import DataOptions
from utils.models.chain import ModelOptions, model_file, onnx_for
from utils.models.precision import CalibOptions


@pytest.mark.slow
def test_a_file_that_carries_the_precision_is_used_as_it_is(lite0, demo_data, tmp_path, capsys):
    fp32, _ = onnx_for(lite0, (-1, 3, 224, 224))
    data = DataOptions(str(demo_data))
    int8, facts = model_file(lite0, "int8", ModelOptions(calib=CalibOptions(calib_size=20, calib_method="max")), data)
    assert facts["tool"] and int8 != fp32
    given = tmp_path / "mine-int8.onnx"
    shutil.copy(int8, given)
    same, facts = model_file(lite0, "int8", ModelOptions(onnx=str(given)), data)
    assert same == given and facts["precision_source"] == "the given ONNX file" and facts["prepare_s"] == 0.0
    with pytest.raises(ArtTRTError, match="mine-int8.onnx already carries int8, not fp16: ask --precision int8"):
        model_file(lite0, "fp16", ModelOptions(onnx=str(given)), data)
    # through main.py: the record names the file given, not a second quantization of it
    assert main.main(["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data),
                      "--backend", "onnxrt", "--precision", "int8", "--onnx", str(given), "--batch_size", "4",
                      "--output", str(tmp_path / "out"), "--quiet"]) == 0
    rec = json.loads(next((tmp_path / "out" / "records").glob("*.json")).read_text())
    assert rec["onnx_file"] == str(given) and rec["top1"] >= 80.0
    assert cli_boundary(main.main, ["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset",
                                    str(demo_data), "--backend", "onnxrt", "--onnx", str(given),
                                    "--output", str(tmp_path / "out"), "--quiet"]) == 2
    assert "already carries int8, not fp32" in capsys.readouterr().err


@pytest.mark.slow
def test_int8_calibrates_on_a_class_map_dataset(demo_data, tmp_path):
    """Calibration opens the dataset with the same --class_map (and cache folder) as validation."""
    root = tmp_path / "pets"
    photos = sorted(Path(demo_data).rglob("*.jpg"))
    for i, p in enumerate(photos[:8]):
        (root / ("cats" if i % 2 else "dogs")).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / ("cats" if i % 2 else "dogs") / p.name)
    cmap = tmp_path / "classes.txt"
    cmap.write_text("dogs\ncats\n")
    cache = tmp_path / "cache"
    assert main.main(["-v", "--network", "mobilenet_v3_small", "--num_classes", "2", "--dataset", str(root),
                      "--class_map", str(cmap), "--cache_dir", str(cache), "--backend", "onnxrt", "--precision",
                      "int8", "--calib_size", "6", "--batch_size", "4", "--output", str(tmp_path / "out"),
                      "--quiet"]) == 0
    rec = json.loads(next((tmp_path / "out" / "records").glob("*.json")).read_text())
    assert rec["calib_images"] == 6 and rec["images"] == 8 and rec["labelled_images"] == 8
    assert len(list(cache.glob("*.u8"))) == 1  # one decoded cache, shared by calibration and validation


@pytest.mark.slow
def test_a_timing_run_on_random_images_calibrates_on_the_dataset_given(demo_data, tmp_path):
    """--synthetic times random images; int8's calibration images still come from --dataset."""
    assert main.main(["-v", "--network", "efficientnet_lite0", "--pretrained", "--synthetic", "4", "--dataset",
                      str(demo_data), "--backend", "onnxrt", "--precision", "int8", "--calib_size", "8",
                      "--batch_size", "4", "--output", str(tmp_path), "--quiet"]) == 0
    rec = json.loads(next((tmp_path / "records").glob("*.json")).read_text())
    assert rec["images"] == 4 and rec["calib_images"] == 8 and rec["calib_dataset"] == str(demo_data)
    assert rec["dataset"] == "random images (seed 0)" and rec["top1"] is None
