"""Every `python ...` line of the README, run as a newcomer would: in a copy of the checkout, with the README's
folders in place (datasets/imagenet from the demo photos, weights/yolov8n-cls.pt), no cache or weights
environment set. Each either succeeds or, where it needs what this machine lacks (TensorRT, a GPU, an ImageNet
download), stops with one sentence and exit code 2 before any long work."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent
# what a command may lack here, by command: TensorRT, a GPU, or (format_dataset.py) the ImageNet download
LACKING = {"-trt": r"TensorRT is not installed", "build_trt.py": r"TensorRT is not installed",
           "--device cuda": r"sees no CUDA GPU|needs a CUDA GPU", "format_dataset.py": r"source folder \S+ does not exist"}


def readme_commands(text: str) -> List[str]:
    """The `python ...` lines of the README's bash blocks, continuation lines joined, comments dropped."""
    commands: List[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].split("  #")[0].strip()
            m = re.search(r"(?:^|&& )(python [^&]+)$", line)
            if m:
                commands.append(" ".join(m.group(1).split()))
    return commands


def documented_commands(root: Path) -> List[str]:
    """The README's commands, then those of docs/usage.md (where the README's sections beyond its tour live)."""
    return [c for page in ("README.md", "docs/usage.md") for c in readme_commands((root / page).read_text())]


def test_readme_commands_are_found():
    commands = documented_commands(ROOT)
    assert commands[0] == "python main.py --demo"
    assert "python main.py -v --batch_size=1 --dataset=datasets/imagenet --network=resnet18 -trt" in commands
    assert "python build_trt.py --fp16 --input_shape -1 3 224 224" in commands
    assert any(c.startswith("python main.py -v --network resnet50 --synthetic 4096") and c.endswith("--telemetry")
               for c in commands)  # a continued line, joined
    assert len(commands) >= 15


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the files git would commit, with the README's datasets/imagenet and weights/yolov8n-cls.pt."""
    sys.path.insert(0, str(ROOT / "tools"))
    from checkout import checkout_copy

    dst = tmp_path_factory.mktemp("newcomer") / "ArtTRT"
    checkout_copy(dst, ROOT)
    from ultralytics import YOLO

    from utils.data.photos import demo_dataset

    made = demo_dataset(dst / "datasets" / "photos")
    (made).rename(dst / "datasets" / "imagenet")
    (dst / "weights").mkdir(exist_ok=True)
    YOLO("yolov8n-cls.yaml", task="classify").save(str(dst / "weights" / "yolov8n-cls.pt"))
    return dst


@pytest.mark.slow
def test_every_readme_command_runs_or_says_in_one_sentence_what_it_lacks(checkout):
    env = {k: v for k, v in os.environ.items() if k not in ("ARTTRT_CACHE_DIR", "ARTTRT_WEIGHTS_DIR",
                                                                 "ARTTRT_DATASETS_DIR")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # as on the CI machine, whatever this one has
    ran, lacking = [], []
    for command in documented_commands(checkout):
        argv = shlex.split(command)
        r = subprocess.run([sys.executable] + argv[1:], cwd=checkout, env=env, capture_output=True, text=True,
                           timeout=900)
        err = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:") or "Error" in ln]
        inconclusive = r.returncode == 5 and "is inconclusive" in r.stderr  # a top-1 gate on too few images to tell
        if r.returncode == 0 or inconclusive:
            ran.append(command)
            continue
        assert r.returncode == 2, f"{command}\nexit {r.returncode}\n{r.stderr[-3000:]}"
        why = [pattern for flag, pattern in LACKING.items() if flag in command]
        assert len(err) == 1 and why and re.match(r"^error: .*(" + "|".join(why) + ")", err[0]), \
            f"{command}\n{r.stderr[-3000:]}"
        assert "Traceback" not in r.stderr, f"{command}\n{r.stderr[-3000:]}"
        lacking.append(command)
    # what this machine can run, runs: the demo, exports, ONNX Runtime runs and compares, the report
    for must in ("python main.py --demo", "python main.py --report outputs",
                 "python onnx_transform.py --network resnet18 --input_shape -1 3 224 224",
                 "python main.py -v --network yolo --weights weights/yolov8n-cls.pt --dataset datasets/imagenet "
                 "--batch_size 10"):
        assert must in ran, f"{must} did not run: lacking={lacking}"
    assert sum(c.startswith("python main.py --compare --network resnet18 --backend onnxrt") for c in ran) == 2
    assert (checkout / "outputs" / "report.html").is_file()
    assert (checkout / "weights" / "onnx" / "resnet18.onnx").is_symlink()
    # each TensorRT, GPU and ImageNet-download line stops, and only those
    assert len(lacking) == sum(any(flag in c for flag in LACKING) for c in documented_commands(checkout))
