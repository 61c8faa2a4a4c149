"""``python -m imgcluster_gui [FOLDER]`` and the ``imgcluster-gui`` entry point: open the desktop app.

When Qt cannot start here (PySide6 missing, or a Linux session with no display and no
``QT_QPA_PLATFORM`` set: Qt would abort the process), a message says why and, given a FOLDER,
the command-line clustering runs instead, so the user still gets a result.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


def qt_unavailable_reason() -> Optional[str]:
    """Why the GUI cannot start in this process, or None when it can."""
    try:
        import PySide6.QtWidgets  # noqa: F401
    except ImportError as exc:
        return f"PySide6 is not installed or broken ({exc}); install it with `pip install PySide6-Essentials`"
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return "no display found (DISPLAY / WAYLAND_DISPLAY unset; set QT_QPA_PLATFORM=offscreen to force Qt)"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcluster-gui", description="Open the imgcluster desktop app.")
    parser.add_argument("folder", nargs="?", help="folder of images to open (and cluster at once)")
    parser.add_argument("--no-run", action="store_true", help="open the folder without starting a run")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Open the GUI on FOLDER; fall back to the CLI when Qt cannot start. Returns the exit status."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    reason = qt_unavailable_reason()
    if reason is not None:
        print(f"imgcluster-gui: cannot open the window: {reason}.", file=sys.stderr)
        if not args.folder:
            print(
                "Give a FOLDER to cluster it on the command line instead, or use `imgcluster cluster FOLDER`.",
                file=sys.stderr,
            )
            return 1
        print("Clustering on the command line instead.", file=sys.stderr)
        from .cli import main as cli_main

        return cli_main(["cluster", args.folder])
    from .ui.app import run_app

    return run_app(args.folder, run=not args.no_run, argv=sys.argv[:1])


if __name__ == "__main__":
    sys.exit(main())
