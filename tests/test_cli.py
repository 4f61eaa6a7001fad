"""The command lines a newcomer types: every option documented with its default, no abbreviations, the
precision flags of trtexec and Polygraphy, the original project's forms, quiet output that fits on one screen."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import build_trt
import format_dataset
import main
import onnx_transform
from utils.core.errors import cli_boundary

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"main.py": main, "build_trt.py": build_trt, "onnx_transform.py": onnx_transform,
           "format_dataset.py": format_dataset}


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_every_option_has_help_and_its_default_shows(script):
    parser = SCRIPTS[script].build_parser()
    assert parser.allow_abbrev is False
    undocumented = [a.option_strings for a in parser._actions
                    if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not undocumented, undocumented
    text = parser.format_help()
    for a in parser._actions:
        if not a.option_strings or a.default is None or a.default is False or a.default == argparse.SUPPRESS:
            continue
        squeezed = "".join(text.split())  # help wraps long defaults across lines
        if "default" in (a.help or ""):  # the help says the default in its own words
            assert "default" in squeezed
        else:  # a default of 0 shows too (0 == False must not hide it)
            assert "".join(f"(default: {a.default})".split()) in squeezed, (a.option_strings, a.default)


def test_main_help_is_short_enough_to_read():
    lines = main.build_parser().format_help().splitlines()
    assert len(lines) <= 142, len(lines)  # 130 before the serving options (issue 24), 140 before --baseline (41)
    assert all(len(line) <= 120 for line in lines)


def test_precision_flags_mean_what_trtexec_and_polygraphy_mean(capsys):
    from utils.backends import registry

    parse = main.build_parser().parse_args
    for flag, want in (("--fp16", ["fp16"]), ("--int8", ["int8"]), ("--bf16", ["bf16"]), ("--fp8", ["fp8"])):
        assert registry.precisions_asked(parse(["-v", flag])) == want
    assert registry.precisions_asked(parse(["-v", "--fp16_io"])) == ["fp32"]  # another option, not --fp16
    assert registry.precisions_asked(parse(["-v", "--precisions", "fp32", "int8"])) == ["fp32", "int8"]
    for argv in (["-v", "--fp16", "--int8"], ["-v", "--precision", "int8", "--fp16"],
                 ["-v", "--precision", "fp16", "--precisions", "fp32"]):
        assert cli_boundary(main.main, argv + ["--synthetic", "2", "--quiet"]) == 2
        assert "ask for the precision once" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no abbreviation: --batch is not --batch_size
        parse(["-v", "--batch", "4"])


@pytest.mark.slow
def test_the_original_forms(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # Ultralytics may write beside the working folder
    from ultralytics import YOLO

    from utils.models.networks import load_network

    pt = tmp_path / "yolov8n-cls.pt"
    YOLO("yolov8n-cls.yaml", task="classify").save(str(pt))
    net = load_network("yolo", weights=str(pt))  # --network yolo --weights weights/yolov8n-cls.pt
    assert net.name == "yolov8n-cls" and net.weights == str(pt)
    # onnx_transform.py --weights best.pth without --network: the exact form to type
    assert cli_boundary(onnx_transform.main, ["--weights", "best.pth", "--input_shape", "1", "3", "224", "224"]) == 2
    assert "python onnx_transform.py --network resnet18 --weights best.pth --input_shape 1 3 224 224" in \
        capsys.readouterr().err
    # with a YOLOv8-cls .pt the network is the file
    assert onnx_transform.main(["--weights", str(pt), "--output", str(tmp_path / "y.onnx")]) == 0
    # build_trt.py --fp16 --input_shape -1 3 224 224 without --onnx: the exact form, then the one named file
    assert cli_boundary(build_trt.main, ["--fp16", "--input_shape", "-1", "3", "224", "224"]) == 2
    assert "e.g. python build_trt.py --onnx" in capsys.readouterr().err
    assert onnx_transform.main(["--network", "mobilenet_v3_small", "--input_shape", "-1", "3", "224", "224"]) == 0
    named = Path(os.environ["ARTTRT_WEIGHTS_DIR"]) / "onnx" / "mobilenet_v3_small.onnx"
    assert named.is_symlink() and named.resolve().is_file() and "-fp32-" in named.resolve().name
    said = capsys.readouterr()
    assert "mobilenet_v3_small.onnx" in said.out and said.out.count(" nodes, opset ") == 1
    assert " nodes" not in said.err  # the export's own INFO line is not said twice (without --verbose)
    assert cli_boundary(build_trt.main, ["--fp16", "--input_shape", "-1", "3", "224", "224"]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err  # it got as far as the builder


@pytest.mark.slow
def test_the_demo_output_fits_on_one_screen_and_the_libraries_stay_quiet(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["ARTTRT_WEIGHTS_DIR"] = str(tmp_path / "w")  # a first export: the libraries' chatter would show here
    r = subprocess.run([sys.executable, "main.py", "--demo", "--output", str(tmp_path / "o")], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) <= 30, "\n".join(lines)
    assert not [ln for ln in lines if "Replaced initializer" in ln or "[modelopt]" in ln or "%|" in ln]
    assert r.stdout.strip().splitlines()[-1] == f"report: {tmp_path / 'o' / 'demo' / 'report.html'}"


@pytest.mark.slow
def test_quiet_means_quiet_through_modelopt_and_the_calibrator(demo_data, tmp_path):
    """A first fp16 and int8 conversion (ModelOpt AutoCast, ModelOpt PTQ with ONNX Runtime's calibrator) with
    --quiet: stdout holds ArtTRT's tables only, stderr ArtTRT-formatted warnings only (ModelOpt's own once,
    not twice), and no library's progress bar."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(ARTTRT_WEIGHTS_DIR=str(tmp_path / "w"), ARTTRT_CACHE_DIR=str(tmp_path / "c"))
    r = subprocess.run([sys.executable, "main.py", "-v", "--network", "efficientnet_lite0", "--pretrained",
                        "--dataset", str(demo_data), "--backend", "onnxrt", "--precisions", "fp16", "int8",
                        "--calib_size", "20", "--batch_size", "4", "--output", str(tmp_path / "o"), "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out, err = r.stdout.splitlines(), r.stderr.splitlines()
    assert out[0].startswith("| network") and not [ln for ln in out if "modelopt" in ln or "Collecting" in ln]
    assert all(ln.startswith(("WARNING ", "USDT:")) for ln in err), err
    assert len(err) == len(set(err)), err  # nothing said twice
    assert not [ln for ln in out + err if "it/s" in ln or "%|" in ln]
    assert (tmp_path / "w" / "onnx").is_dir() and list((tmp_path / "w" / "onnx").glob("*int8*.onnx"))


def test_the_stable_name_never_replaces_a_users_file_or_link(tmp_path, monkeypatch, caplog):
    from onnx_transform import name_stably

    folder = tmp_path / "onnx"
    folder.mkdir()
    out = folder / "net-dyn-224x224-fp32-abc.onnx"
    out.write_bytes(b"export")
    out.with_suffix(".json").write_text("{}")  # ArtTRT's sidecar: the file is ArtTRT's
    assert name_stably(out, "net") == folder / "net.onnx" and os.readlink(folder / "net.onnx") == out.name
    newer = folder / "net-dyn-224x224-fp32-def.onnx"
    newer.write_bytes(b"newer")
    newer.with_suffix(".json").write_text("{}")
    assert name_stably(newer, "net") and os.readlink(folder / "net.onnx") == newer.name  # its own link moves on
    mine = tmp_path / "my_model.onnx"
    mine.write_bytes(b"mine")
    (folder / "net.onnx").unlink()
    (folder / "net.onnx").symlink_to(mine)
    assert name_stably(newer, "net") is None and os.readlink(folder / "net.onnx") == str(mine)
    (folder / "net.onnx").unlink()
    (folder / "net.onnx").write_bytes(b"a file of the user's")
    assert name_stably(newer, "net") is None and (folder / "net.onnx").read_bytes() == b"a file of the user's"
    (folder / "net.onnx").unlink()
    (folder / "net.onnx").symlink_to("gone.onnx")  # dangling, not ArtTRT's: left too
    assert name_stably(newer, "net") is None and os.readlink(folder / "net.onnx") == "gone.onnx"


@pytest.mark.parametrize("argv, rc", [(["--help"], 0), (["-v", "--batch_size", "0"], 2),
                                      (["-v", "--device", "tpu"], 2), (["-v", "--scenario", "server"], 2),
                                      (["-v", "--tf32"], 2), (["--compare", "--val_dataset"], 2),
                                      (["-v", "--network", "resnet81"], 2), (["-v", "--batch", "8"], 2)])
def test_help_and_argument_refusals_load_no_pytorch(argv, rc):
    """main.py --help and every argument refusal answer without importing PyTorch (1.5 s of the 1.8 s --help took;
    utils/core/deps.py): measured in a fresh interpreter, which says which heavy modules it loaded."""
    code = ("import sys\nfrom utils.core.errors import cli_boundary\nimport main\n"
            f"try:\n    rc = cli_boundary(main.main, {argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'onnxruntime', 'onnx', "
            "'modelopt', 'tensorrt', 'mlperf_loadgen', 'ultralytics', 'matplotlib', 'scipy'})\n"
            "print('RESULT', rc, heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert f"RESULT {rc} []" in r.stdout, (r.stdout[-500:], r.stderr[-2000:])


@pytest.mark.parametrize("argv, says", [
    (["-v", "--batch", "8"], "--batch: did you mean --batch_size or --batch_sizes?"),
    (["-v", "--netwrk", "resnet18"], "--netwrk: did you mean --network or --networks?"),
    (["-v", "--precison=fp16"], "--precison: did you mean --precision or --precisions?"),
])
def test_a_mistyped_option_is_answered_with_the_options_meant(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main.main(argv)
    assert exit_.value.code == 2 and says in capsys.readouterr().err


def test_an_unknown_option_far_from_every_other_gets_no_guess(capsys):
    with pytest.raises(SystemExit):
        main.main(["-v", "--zzzz"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzz" in err and "did you mean" not in err


@pytest.mark.parametrize("name, says", [
    ("resnet81", "did you mean resnet18, resnet152, resnet101?"),
    ("mobilenetv2", "did you mean mobilenet_v2,"),
    ("efficientnet_lite_0", "did you mean efficientnet_lite0"),
    ("nothing_like_it", "unknown network 'nothing_like_it': use a torchvision classifier name"),
])
def test_a_mistyped_network_is_refused_with_the_closest_names(name, says, capsys):
    from utils.core.errors import ArtTRTError
    from utils.models.names import check_network_name

    with pytest.raises(ArtTRTError, match=re.escape(says)):
        check_network_name(name)
    for fine in ("resnet18", "vit_b_16", "efficientnet_lite0", "timm:anything", "yolov8n-cls.pt", "net.yaml"):
        check_network_name(fine)  # timm's and YOLO's names are checked by their builders


def test_the_names_read_from_torchvisions_sources_are_its_list():
    import torchvision

    from utils.models.names import torchvision_classifiers

    assert torchvision_classifiers() == sorted(torchvision.models.list_models(module=torchvision.models))


def test_onnx_transform_refuses_a_mistyped_network_before_loading_pytorch():
    code = ("import sys\nfrom utils.core.errors import cli_boundary\nimport onnx_transform\n"
            "rc = cli_boundary(onnx_transform.main, ['--network', 'resnet81'])\n"
            "print('RESULT', rc, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision'}))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "RESULT 2 []" in r.stdout and "did you mean resnet18" in r.stderr, (r.stdout, r.stderr[-1000:])
