"""Draws the README's pictures of report.html with headless Chromium: the demo's report (docs/report-demo.png) and
a small study's (docs/report-study.png), each from a fresh run on this machine's CPU.

Usage (Chromium from the distribution: apt-get install chromium):
    python tools/report_picture.py                         # both pictures, from fresh runs under a temporary folder
    python tools/report_picture.py --html outputs/report.html --png shot.png   # any report
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Flags for a machine with a closed network (no background connections, no first-run tasks) and root (no sandbox)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
STUDY = ["-v", "--network", "efficientnet_lite0", "--pretrained", "--backends", "torch", "onnxrt", "--precisions",
         "fp32", "int8", "--calib_size", "20", "--batch_sizes", "1", "4", "--duration", "1", "--quiet"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("no Chromium here: apt-get install chromium (Debian), or pass the browser's path in CHROMIUM")


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 2200) -> Path:
    """A width x height picture of the page's top, as a reader first sees it."""
    if not html.is_file():
        raise SystemExit(f"no report at {html}")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png.resolve()}", html.resolve().as_uri()], check=True,
                       capture_output=True, timeout=120)
    if not png.is_file():
        raise SystemExit(f"Chromium wrote no picture of {html}")
    return png


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--html", type=Path, help="a report.html (default: the demo's and a study's, run now)")
    p.add_argument("--png", type=Path, help="where the picture of --html goes")
    args = p.parse_args(argv)
    if args.html:
        print(screenshot(args.html, args.png or args.html.with_suffix(".png")))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        demo, study = Path(tmp) / "demo", Path(tmp) / "study"
        subprocess.run([sys.executable, "main.py", "--demo", "--output", str(demo)], cwd=ROOT, check=True)
        subprocess.run([sys.executable, "main.py", *STUDY, "--dataset", str(ROOT / "datasets" / "demo"),
                        "--output", str(study)], cwd=ROOT, check=True)
        for html, png in ((demo / "demo" / "report.html", ROOT / "docs" / "report-demo.png"),
                          (study / "report.html", ROOT / "docs" / "report-study.png")):
            print(screenshot(html, png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
