"""Issue 42, parts 1-2: timm's classifiers through ArtTRT (`--network timm:NAME`, fed as timm feeds them), FLOPs and
activations per image against the figures torchvision and timm publish, and the share of a GPU's dense peak from
NVIDIA's datasheets."""
from __future__ import annotations

import json

import pytest

from utils.core.errors import ArtTRTError
from utils.measure.peaks import compute_fields, memory_tbps, peak
from utils.models.flops import image_cost
from utils.models.networks import load_network


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "vit_b_16"])  # resnet50: 4.09 G
def test_flops_match_the_figures_torchvision_publishes(name):
    import torchvision

    published = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]  # GFLOPS in its words: G multiply-adds
    cost = image_cost(load_network(name))
    assert cost["gflops_per_image"] / 2 == pytest.approx(published, rel=0.01), cost  # vit_b_16: attention counted too
    assert cost["flops_counter"] == "torch.utils.flop_counter.FlopCounterMode"


def test_activations_match_timms_published_counts():
    # timm's model cards (resnet18.a1_in1k: 1.8 GMACs, 2.5 M activations; vit_tiny_patch16_224: 1.3, 6.0)
    assert image_cost(load_network("resnet18"))["activations_per_image"] / 1e6 == pytest.approx(2.5, abs=0.05)
    vit = image_cost(load_network("timm:vit_tiny_patch16_224"))
    assert vit["activations_per_image"] / 1e6 == pytest.approx(6.0, abs=0.05)
    assert vit["gflops_per_image"] / 2 == pytest.approx(1.26, abs=0.01)


def test_a_timm_network_is_fed_as_timm_feeds_it():
    vit = load_network("timm:vit_tiny_patch16_224")
    pp = vit.preprocess
    # timm's data config: crop_pct 0.9 -> the shorter side to floor(224 / 0.9) = 248, bicubic, mean/std 0.5
    assert (pp.resize, pp.crop, pp.interpolation, pp.mean, pp.std) == (248, 224, "bicubic", (0.5,) * 3, (0.5,) * 3)
    assert vit.num_classes == 1000 and vit.weights == "random:seed0"
    res = load_network("timm:resnet18", num_classes=10)
    # timm's resnet18 is not torchvision's: crop_pct 0.95, bicubic, ImageNet mean/std; 10 classes
    assert (res.preprocess.resize, res.preprocess.interpolation, res.num_classes) == (235, "bicubic", 10)
    assert res.preprocess.as_dict()["interpolation"] == "bicubic"
    assert "interpolation" not in load_network("resnet18").preprocess.as_dict()  # keys of before stand


def test_timm_names_are_checked_with_a_suggestion_and_downloads_fail_in_one_sentence(monkeypatch):
    with pytest.raises(ArtTRTError, match=r"timm has no model 'vit_tiny_patch16_22': did you mean "
                                          r"timm:vit_tiny_patch16_224"):
        load_network("timm:vit_tiny_patch16_22")
    import timm

    def offline(*a, **kw):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ArtTRTError, match=r"timm could not fetch the pretrained weights of timm:resnet18 \(OSError: "
                                          r"We couldn't connect .*\): check the network, or pass --weights FILE"):
        load_network("timm:resnet18", pretrained=True)


def test_a_users_weights_load_into_a_timm_network(tmp_path):
    import torch

    src = load_network("timm:resnet18", num_classes=7, seed=3)
    path = tmp_path / "w.pt"
    torch.save(src.model.state_dict(), path)
    net = load_network("timm:resnet18", weights=str(path))
    assert net.num_classes == 7 and net.weights == str(path)
    assert torch.equal(net.model.state_dict()["fc.weight"], src.model.state_dict()["fc.weight"])


def test_peaks_come_from_the_datasheets_by_gpu_model_and_precision():
    assert peak("NVIDIA H100 80GB HBM3", "fp16") == (989.5, "H100 SXM5 FP16 Tensor Cores, dense (NVIDIA datasheet)")
    assert peak("NVIDIA H100 80GB HBM3", "fp32")[0] == 67.0  # strict fp32: the CUDA cores
    assert peak("NVIDIA H100 80GB HBM3", "fp32", tf32=True)[0] == 494.5
    assert peak("NVIDIA H100 PCIe", "int8")[0] == 1513.0 and peak("NVIDIA H200", "fp8")[0] == 1979.0
    assert peak("NVIDIA A100-SXM4-80GB", "fp8") is None  # no fp8 on Ampere
    assert peak("NVIDIA GeForce RTX 3060", "fp16") is None and peak(None, "fp32") is None  # not in the table
    assert memory_tbps("NVIDIA H200") == 4.8 and memory_tbps("NVIDIA L4") == 0.3
    # ResNet-50 (8.18 GFLOPs) at 23,852 img/s in fp16 on an H100 SXM: 195 TFLOP/s, 19.7 % of 989.5
    got = compute_fields(8.1784, 23852.0, "NVIDIA H100 80GB HBM3", "fp16")
    assert got["achieved_tflops"] == pytest.approx(195.07, abs=0.01) and got["percent_of_peak"] == pytest.approx(19.71,
                                                                                                          abs=0.01)
    assert got["compute_roof_images_per_s"] == pytest.approx(120989.4, abs=0.1)  # 989.5 TFLOP/s / 8.18 GFLOPs
    assert "memory_roof_images_per_s" not in got  # no bytes given
    # with the bytes: 48.8 MiB of fp16 weights over a batch of 256, 11.1 M activations x 2 bytes x written and read
    roof = compute_fields(8.1784, 23852.0, "NVIDIA H100 80GB HBM3", "fp16", weights_mib=48.8,
                          activations=11114984, batch_size=256)["memory_roof_images_per_s"]
    assert roof == pytest.approx(3.35e12 / (48.8 * 2**20 / 256 + 2 * 11114984 * 2), rel=1e-6)
    assert compute_fields(8.1784, 100.0, None, "fp32") == {"achieved_tflops": 0.8178}
    assert compute_fields(None, 100.0, "NVIDIA H200", "fp32") == {}


@pytest.mark.slow
def test_a_timm_vit_runs_through_pytorch_and_onnx_runtime_with_its_cost_in_the_records(tmp_path):
    import main
    from utils.core.errors import cli_boundary

    out = tmp_path / "o"
    assert cli_boundary(main.main, ["-v", "--network", "timm:vit_tiny_patch16_224", "--synthetic", "4",
                                    "--backends", "torch", "onnxrt", "--batch_size", "2", "--output", str(out),
                                    "--quiet"]) == 0
    recs = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert sorted(r["backend"] for r in recs) == ["onnxrt", "torch"]
    for r in recs:
        assert r["network"] == "timm:vit_tiny_patch16_224" and r["gflops_per_image"] == pytest.approx(2.507, abs=0.01)
        assert r["achieved_tflops"] == pytest.approx(r["gflops_per_image"] * r["images_per_s"] / 1e3, rel=1e-3)
        assert r.get("percent_of_peak") is None  # the CPU has no peak in the table
    assert next(r for r in recs if r["backend"] == "onnxrt")["agree_top1_percent"] == 100.0
    text = (out / "table_outputs" / "compute.md").read_text()
    assert "### timm:vit_tiny_patch16_224: 2.51 GFLOPs per image, 5.97 M activations" in text


@pytest.mark.slow
def test_torchvisions_vit_goes_through_export_autocast_and_qdq_int8_on_the_cpu(tmp_path, demo_data):
    """vit_b_16 through ONNX Runtime fp16 (ModelOpt's AutoCast) and int8 (ModelOpt's Q/DQ, which quantizes a ViT's
    MatMuls): both files open and run (ONNX Runtime 1.24's "all" CPU layout passes crash on the fp16 file: ArtTRT
    builds that session at "extended"), and the int8 file has Q/DQ in front of MatMuls. (swin_t and convnext_tiny
    went through the same here by hand: 64 s and 32 s; left out of CI for its time.)"""
    import onnx

    import main
    from utils.core.errors import cli_boundary

    out = tmp_path / "o"
    assert cli_boundary(main.main, ["-v", "--network", "vit_b_16", "--dataset", str(demo_data), "--backends", "onnxrt",
                                    "--precisions", "fp16", "int8", "--calib_size", "4", "--batch_size", "4",
                                    "--limit", "8", "--output", str(out), "--quiet"]) == 0
    recs = {r["precision"]: r for r in (json.loads(p.read_text()) for p in (out / "records").glob("*.json"))}
    assert sorted(recs) == ["fp16", "int8"] and not any(r.get("error") for r in recs.values())
    assert recs["fp16"]["graph_optimization"] == "extended (fp16/bf16 on the CPU provider)"
    graph = onnx.load(recs["int8"]["onnx_file"]).graph
    made_by = {o: n for n in graph.node for o in n.output}
    fed = [n for n in graph.node if n.op_type == "MatMul"
           and any(made_by.get(i) is not None and made_by[i].op_type == "DequantizeLinear" for i in n.input)]
    assert len(fed) >= 48  # 12 blocks x (q/k/v in one, out, 2 MLP) at least


def test_a_network_the_counter_cannot_run_is_warned_once_and_left_without_figures(caplog):
    import logging

    from utils.models.flops import counted_cost
    from utils.study.validate import count_cost

    net = load_network("resnet18")

    def unrunnable(*args):
        raise RuntimeError("an operator the counter cannot follow")

    net.model.forward = unrunnable
    with caplog.at_level(logging.WARNING, logger="utils.study.validate"):
        count_cost(net)
        count_cost(net)  # a second setup of the same network: not tried, nor said, again
    assert caplog.messages == ["resnet18: FLOPs per image not counted (RuntimeError: an operator the counter cannot "
                               "follow)"]
    assert counted_cost(net) == {}
