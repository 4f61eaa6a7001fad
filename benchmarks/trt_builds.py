"""Every precision ArtTRT can emit, built into TensorRT engines for real (a benchmark that prints a table).

Two steps, because the ONNX files are made where ModelOpt runs (any CPU) and built where a TensorRT builder
runs (on the H200 this project borrows, TensorRT-RTX's; its runtime refuses compute capability 9.0):

  --prepare DIR   makes mobilenet_v3_small (random weights) at fp32, fp16 and bf16 (ModelOpt AutoCast), int8
                  (ModelOpt Q/DQ, and ONNX Runtime's quantizer) and fp8 (ModelOpt), calibrated on --dataset,
                  with ArtTRT's own chain (utils/models/chain.model_file); each file carries its precision;
  --build DIR     builds each file through build_trt.py (dynamic batch 1..256, then again: the engine cache,
                  then a static batch of 8) and through main.py's own path (`main.py -v -trt --onnx FILE`,
                  whose engine is made by the same function before the runtime is asked to load it), and
                  prints engine size, build time, layer count, and whether the engine cache and the timing
                  cache were reused; a refusal by the builder or the runtime is quoted.

Usage:
    python benchmarks/trt_builds.py --prepare .trtbuild --dataset datasets/demo
    python benchmarks/trt_builds.py --build .trtbuild [--out DIR]
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NETWORK = "mobilenet_v3_small"
FILES = {  # name: (precision, quantizer)
    "fp32": ("fp32", "auto"), "fp16": ("fp16", "auto"), "bf16": ("bf16", "auto"),
    "int8-modelopt": ("int8", "modelopt"), "int8-ort": ("int8", "ort"), "fp8-modelopt": ("fp8", "modelopt"),
}


def prepare(folder: Path, dataset: str) -> None:
    from utils.core.errors import ArtTRTError
    from utils.data.options import DataOptions
    from utils.models.chain import ModelOptions, model_file
    from utils.models.networks import load_network
    from utils.models.precision import CalibOptions

    net = load_network(NETWORK, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (precision, quantizer) in FILES.items():
        calib = CalibOptions(calib_method="max", calib_size=20, quantizer=quantizer)
        try:
            path, facts = model_file(net, precision, ModelOptions(calib=calib), DataOptions(dataset=dataset))
        except ArtTRTError as err:
            print(f"{name}: not made: {err}")
            continue
        shutil.copy(path, folder / f"{NETWORK}-{name}.onnx")
        print(f"{name}: {path.stat().st_size / 1e6:.1f} MB, made by {facts.get('tool', 'torch.onnx')}")


def quiet(fn, argv):  # type: ignore[no-untyped-def]
    """Runs a script's main(argv) through its error boundary; (exit code, its last error line)."""
    from utils.core.errors import cli_boundary

    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        rc = cli_boundary(fn, argv)
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]
    return rc, (lines[-1][7:] if lines else ""), out.getvalue()


def newest_sidecar(folder: Path):  # type: ignore[no-untyped-def]
    sidecars = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(sidecars[-1].read_text()) if sidecars else {}


def build(folder: Path, out: Path) -> None:
    import build_trt
    import main
    from utils.models.paths import weights_dir

    engines = weights_dir() / "engines"
    rows = []
    for name, (precision, _) in FILES.items():
        onnx = folder / f"{NETWORK}-{name}.onnx"
        if not onnx.is_file():
            rows.append([name, "-", "file not made", "", "", "", "", ""])
            continue
        for route, argv in (("build_trt dynamic 1-256", ["--onnx", str(onnx), "--precision", precision]),
                            ("build_trt again (cache)", ["--onnx", str(onnx), "--precision", precision]),
                            ("build_trt static 8", ["--onnx", str(onnx), "--precision", precision, "--input_shape",
                                                    "8", "3", "224", "224"])):
            rc, err, said = quiet(build_trt.main, argv)
            s = newest_sidecar(engines) if rc == 0 else {}
            reused = rc == 0 and "(reused," in said
            rows.append([name, route, ("reused" if reused else "built") if rc == 0 else f"refused: {err}",
                         f"{s.get('engine_bytes', 0) / 1e6:.2f}" if s else "", 0.0 if reused else s.get("build_s", ""),
                         s.get("network_layers", ""), "yes" if reused else "no", s.get("timing_cache_reused", "")])
        rc, err, _ = quiet(main.main, ["-v", "-trt", "--network", NETWORK, "--onnx", str(onnx), "--precision", precision,
                                    "--synthetic", "8", "--batch_size", "8", "--output", str(out / "main"), "--quiet"])
        s = newest_sidecar(engines)
        if s.get("onnx") != str(onnx):  # no engine of this file was made: the figures are not this file's
            s = {}
        rows.append([name, "main.py -v -trt (dynamic 1-8)", "ran" if rc == 0 else f"built, then: {err}"
                     if s else f"refused: {err}", f"{s['engine_bytes'] / 1e6:.2f}" if s else "",
                     s.get("build_s", ""), s.get("network_layers", ""), "", s.get("timing_cache_reused", "")])
    header = ["file", "route", "result", "engine MB", "build s", "layers", "engine reused", "timing cache reused"]
    text = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n" + \
        "\n".join("| " + " | ".join(str(c) for c in r) + " |" for r in rows)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trt_builds.md").write_text(text + "\n")


def main_() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--prepare", type=Path)
    p.add_argument("--build", type=Path)
    p.add_argument("--dataset", default="datasets/demo")
    p.add_argument("--out", type=Path, default=Path("outputs/trt_builds"))
    args = p.parse_args()
    from utils.core.errors import setup_logging

    setup_logging(quiet=True)
    if args.prepare:
        prepare(args.prepare, args.dataset)
    if args.build:
        build(args.build, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main_())
