"""The torchao backend (utils/backends/ao.py) against torchao itself: what quantize_ replaces (nn.Linear, its
default filter), the layers int8 dynamic keeps float because torch._int_mm refuses fewer than 17 rows, the refusals
in one sentence, no calibration rows, and the inductor options torchao sets given back."""
from __future__ import annotations

import importlib.util
import logging

import pytest
import torch
import torchvision
from torch import nn

from tests.report import as_read

pytest.importorskip("torchao")

from utils.backends import ao, registry  # noqa: E402
from utils.backends.base import RunSpec  # noqa: E402
from utils.core.errors import ArtTRTError  # noqa: E402
from utils.data.cache import SyntheticDataset  # noqa: E402
from utils.measure.measurement import MeasureOptions  # noqa: E402
from utils.models.networks import Network, Preprocess  # noqa: E402
from utils.report.sections.cells import row_notes  # noqa: E402

row_notes = as_read(row_notes)
from utils.study import plan as study_plan  # noqa: E402
from utils.study.validate import validate_one, warn_if_not_numbers  # noqa: E402

warn_if_not_numbers = as_read(warn_if_not_numbers)


@pytest.fixture(autouse=True)
def _inductor_options_kept():
    """quantize_linear_layers alone leaves torchao's inductor options set (the runner gives them back): not past a
    test."""
    import torch._inductor.config as inductor

    before = inductor.get_config_copy()
    yield
    inductor.load_config(before)


def _vit(image_size: int) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(image_size=image_size).eval()
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts the head at zero: every class alike
    return model


def test_dynamic_int8_quantizes_the_blocks_and_keeps_the_head_float():
    """ViT-B/16 at 64 px: 16 patches + the class token = 17 rows per image in every block's MLP (quantized), one row
    at the head (kept float: torch._int_mm on CUDA needs more than 16); MultiheadAttention's projections are not
    nn.Linear layers torchao takes. Weight-only int8 has no row limit: it takes the head too."""
    model, x = _vit(64), torch.rand(1, 3, 64, 64)
    rows = ao.rows_per_image(model, x)
    assert rows["heads.head"] == 1 and rows["encoder.layers.encoder_layer_0.mlp.0"] == 17 and len(rows) == 25
    with torch.inference_mode():
        ref = model(x)
    mlp = sum(m.weight.numel() for name, m in model.named_modules() if ".mlp." in name and isinstance(m, nn.Linear))
    share = mlp / sum(p.numel() for p in model.parameters())
    counts = ao.quantize_linear_layers(model, "int8", "dynamic", x)
    assert counts == {"quantized_layers": 24, "linear_layers": 37, "conv_layers": 1, "kept_for_rows": 1,
                      "quantized_weight_share": pytest.approx(share, abs=1e-4)}
    assert type(model.heads.head.weight) is nn.Parameter
    assert type(model.encoder.layers[0].mlp[0].weight).__module__.startswith("torchao")
    with torch.inference_mode():
        got = model(x)
    assert 0 < (got - ref).abs().max() < 0.05 * ref.abs().max()  # int8, not the float model, and close to it
    wo = ao.quantize_linear_layers(_vit(64), "int8", "weight_only", x)
    assert (wo["quantized_layers"], wo["kept_for_rows"]) == (25, 0)


def test_a_resnet_keeps_every_convolution():
    model = torchvision.models.resnet18().eval()
    x = torch.rand(1, 3, 64, 64)
    assert ao.quantize_linear_layers(model, "int8", "dynamic", x) == {
        "quantized_layers": 0, "linear_layers": 1, "conv_layers": 20, "quantized_weight_share": 0.0, "kept_for_rows": 1}
    counts = ao.quantize_linear_layers(torchvision.models.resnet18().eval(), "int8", "weight_only", x)
    assert counts["quantized_layers"] == 1 and counts["quantized_weight_share"] == pytest.approx(513000 / 11689512,
                                                                                                 abs=1e-4)


def test_refusals_are_one_sentence(monkeypatch):
    with pytest.raises(ArtTRTError, match="torchao fp8 needs a CUDA GPU"):
        registry.check(RunSpec("torchao", "fp8", "cpu"))
    with pytest.raises(ArtTRTError, match="the torchao backend has no fp16: it runs int8, fp8; fp16 runs on"):
        registry.check(RunSpec("torchao", "fp16", "cpu"))
    with pytest.raises(ArtTRTError, match="--ao_int8 'w4' is not one of dynamic, weight_only"):
        ao.config_for("int8", "w4")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    with pytest.raises(ArtTRTError, match=r"torchao is not installed: pip install torchao"):
        registry.check(RunSpec("torchao", "int8", "cpu"))


@pytest.mark.parametrize("capability, refused", [((8, 0), True), ((8, 6), True), ((8, 9), False), ((9, 0), False)])
def test_fp8_needs_compute_capability_8_9(monkeypatch, capability, refused):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA A100-SXM4-80GB")
    spec = RunSpec("torchao", "fp8", "cuda")
    if refused:
        with pytest.raises(ArtTRTError, match=rf"compute capability 8.9 or above .*: NVIDIA A100-SXM4-80GB is "
                                              rf"{capability[0]}.{capability[1]}"):
            ao.check(spec)
    else:
        ao.check(spec)


def test_no_calibration_rows_and_no_calibration_in_its_job_keys():
    """--calib_methods makes one row per method for ONNX Runtime's int8, and none more for torchao's."""
    def spec_for(backend, precision):
        return RunSpec(backend, precision, "cpu", options=registry.get(backend).impl().Options())

    plan = study_plan.make_plan(["resnet18"], ["onnxrt", "torchao"], ["int8"], [1], spec_for, bounded=True,
                                calib_methods=["max", "entropy"])
    assert [(s.spec.backend, s.calibrated) for s in plan.setups] == [("onnxrt", True), ("onnxrt", True),
                                                                     ("torchao", False)]
    setup = plan.setups[-1]
    ident = study_plan.job_identity(setup, setup.jobs[0], {}, {})
    assert "calib" not in ident["model"] and ident["options"] == {"ao_int8": "dynamic", "compile_mode": "default"}
    onnx_ident = study_plan.job_identity(plan.setups[0], plan.setups[0].jobs[0], {}, {})
    assert onnx_ident["model"]["calib"]["calib_method"] == "max"


def test_the_table_says_what_stayed_float():
    rec = {"network": "resnet50", "backend": "torchao", "precision": "int8", "options": "dynamic activations",
           "quantized_layers": 0, "linear_layers": 1, "conv_layers": 53, "quantized_weight_share": 0.0,
           "float_layers": "bf16", "kept_for_rows": 1}
    assert row_notes([rec, {**rec, "batch_size": 256}, {"network": "resnet50", "backend": "torch"}]) == [
        "torchao int8 (dynamic activations) on resnet50 quantized 0 of 1 Linear layers (0.0 % of the weights); its 53 "
        "convolutions ran in bf16, not quantized; 1 Linear layers fed under 17 rows per image (a classifier head) "
        "stayed float: torch._int_mm refuses fewer."]


def test_advice_for_flat_and_not_numbers_fits_the_backend(caplog):
    base = {"network": "vit_b_16", "batch_size": 256, "images": 1024}
    with caplog.at_level(logging.WARNING):
        warn_if_not_numbers({**base, "backend": "torchao", "precision": "int8", "unrankable_outputs": 1024}, "ao")
        warn_if_not_numbers({**base, "backend": "torchao", "precision": "int8", "nonfinite_outputs": 3}, "ao")
        warn_if_not_numbers({**base, "backend": "onnxrt", "precision": "int8", "nonfinite_outputs": 3}, "ort")
    flat, ao_nan, ort_nan = [r.getMessage() for r in caplog.records]
    assert "where the fp32 row is flat too, the weights give it" in flat
    assert flat.endswith("else int8 quantization lost the outputs: keep the worst layers in float")
    assert "calib" not in flat
    assert "int8 quantization lost the outputs: keep the worst layers in float" in ao_nan and "calib" not in ao_nan
    assert "--calib_method" in ort_nan


def _tiny() -> Network:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 15 * 15, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    return Network("tiny", model.eval(), Preprocess(resize=32, crop=32), 10, "seeded")


def test_the_runner_gives_back_inductors_options_and_records_what_it_quantized():
    import torch._inductor.config as inductor

    inductor.coordinate_descent_tuning = False  # the fixture gives the process's options back
    before = inductor.get_config_copy()
    net = _tiny()
    runner = ao.AoRunner(net, "cpu", "int8", "weight_only")
    with runner:
        assert inductor.coordinate_descent_tuning and not before["coordinate_descent_tuning"]  # torchao's, for now
        info = runner.info()
        assert type(net.model[3].weight) is nn.Parameter  # the network itself is never quantized: a copy is
    assert inductor.get_config_copy() == before
    assert (info["quantized_layers"], info["linear_layers"], info["conv_layers"]) == (2, 2, 1)
    assert info["quantized_weight_share"] == pytest.approx((1800 * 64 + 640) / sum(p.numel() for p in
                                                                                   net.model.parameters()), abs=1e-4)
    assert info["float_layers"] == "fp32" and info["int8_mode"] == "weight_only"
    assert info["peak_precision"] == "fp32"  # weight-only int8 computes in float
    fp32_bytes = sum(p.numel() for p in net.model.parameters()) * 4
    assert 0.2 * fp32_bytes < info["size_mib"] * 2**20 < 0.5 * fp32_bytes  # int8 weights and their scales


@pytest.mark.slow
def test_validate_runs_torchao_int8_through_torch_compile():
    net = _tiny()
    ds = SyntheticDataset(8, 32, seed=0)
    rec, _ = validate_one(RunSpec("torchao", "int8", options=ao.Options(ao_int8="dynamic")), net, ds,
                          MeasureOptions(batch_size=4, progress=False))
    rec = rec.as_dict()  # the record as written
    assert rec["backend"] == "torchao" and rec["precision"] == "int8" and rec["options"] == "dynamic activations"
    # 225 rows per image would pass torch._int_mm's limit, but this Linear sees one: the flattened image
    assert (rec["quantized_layers"], rec["kept_for_rows"]) == (0, 2)
    assert rec["preparation"]["runner_prepare_s"] > 0 and rec["images_per_s"] > 0 and rec["compile_mode"] == "default"


@pytest.mark.slow
def test_drift_against_vanilla_on_real_photos(lite0, demo_data, tmp_path):
    """EfficientNet-Lite0's real weights on the 20 photos: weight-only int8 quantizes its one Linear layer (the
    1280 x 1000 head) and moves the scores, without changing a top-1 answer; int8 dynamic keeps that head float (one
    row per image) and so matches Vanilla to float rounding."""
    from utils.data.options import DataOptions
    from utils.report.records import Recorder
    from utils.study.comparison import compare_one

    data = DataOptions(str(demo_data))
    ds = data.open(lite0.preprocess, lite0.num_classes)
    found = {}
    for mode in ("weight_only", "dynamic"):
        rec, stats, _ = compare_one(RunSpec("torch", "fp32"), RunSpec("torchao", "int8", options=ao.Options(mode)),
                                    lite0, ds, batch_size=4, rtol=1e-2, atol=1e-8, data=data,
                                    recorder=Recorder(tmp_path / mode), progress=False)
        rec = rec.as_dict()  # the record as written
        found[mode] = rec
    wo, dyn = found["weight_only"], found["dynamic"]
    assert wo["top1_agreement_percent"] == 100.0 and wo["ref_top1"] == wo["other_top1"] == 85.0
    assert 1e-3 < wo["max_abs_error"] < 0.2 and 1e-4 < wo["rel_l2_error"] < 0.05
    assert dyn["max_abs_error"] < 1e-4 and dyn["top1_agreement_percent"] == 100.0
