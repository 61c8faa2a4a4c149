"""Smoke test of the built desktop bundle: start it offscreen on the sample folder, let it cluster, expect exit 0.

``make bundle-smoke`` (or ``python packaging/smoke.py [--binary PATH] [--folder DIR]``) runs
``dist/imgcluster/imgcluster-gui --quit-after-run resources/sample_images`` with ``QT_QPA_PLATFORM=offscreen``
and fresh settings, cache and data folders (nothing of the person's own is read or written), then checks the
exit status and the summary line the app prints (``run succeeded: 150 images in N groups``), and reports the
bundle's size and how long the run took.  Not part of ``make test``: the bundle takes minutes to build.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"run succeeded: (\d+) images in (\d+) groups, (\d+) skipped")


def default_binary() -> Path:
    """Where ``make bundle`` puts the app on this OS."""
    if sys.platform == "darwin":
        return REPO_ROOT / "dist" / "imgcluster.app" / "Contents" / "MacOS" / "imgcluster-gui"
    name = "imgcluster-gui.exe" if sys.platform == "win32" else "imgcluster-gui"
    return REPO_ROOT / "dist" / "imgcluster" / name


def folder_size(folder: Path) -> int:
    """Bytes of every regular file under ``folder`` (links not followed)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the bundle once; returns 0 when it started, clustered the folder and exited 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=default_binary(), help="the built app (default: %(default)s)")
    parser.add_argument("--folder", type=Path, default=REPO_ROOT / "resources" / "sample_images")
    parser.add_argument("--expect-images", type=int, default=150, help="images the folder holds (0: do not check)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before the run counts as hung")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.binary.is_file():
        print(f"smoke: no bundle at {args.binary}; build it with `make bundle`", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="imgcluster-smoke-") as scratch:
        home = Path(scratch)
        env = dict(os.environ)
        env.update(
            QT_QPA_PLATFORM="offscreen",
            IMGCLUSTER_CACHE_DIR=str(home / "cache"),
            IMGCLUSTER_DATA_DIR=str(home / "data"),
            XDG_CONFIG_HOME=str(home / "config"),  # the window's settings (Linux)
            HOME=str(home),  # macOS and Windows-style settings go under it too
        )
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [str(args.binary), "--quit-after-run", str(args.folder)],
                env=env,
                capture_output=True,
                text=True,
                timeout=args.timeout,
            )
        except subprocess.TimeoutExpired:
            print(f"smoke: FAILED: no exit after {args.timeout:.0f} s", file=sys.stderr)
            return 1
        seconds = time.perf_counter() - started
    bundle = args.binary.parent if sys.platform != "darwin" else args.binary.parents[2]
    match = SUMMARY.search(done.stdout)
    print(done.stdout.strip())
    print(f"smoke: exit status {done.returncode} after {seconds:.1f} s; bundle {folder_size(bundle) / 1e6:.0f} MB")
    if done.returncode != 0 or match is None:
        print(f"smoke: FAILED\n{done.stderr.strip()[-4000:]}", file=sys.stderr)
        return 1
    if args.expect_images and int(match.group(1)) != args.expect_images:
        print(f"smoke: FAILED: {match.group(1)} images clustered, {args.expect_images} expected", file=sys.stderr)
        return 1
    print("smoke: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
