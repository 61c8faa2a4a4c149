"""``python -m imgcluster_gui [FOLDER]`` and the ``imgcluster-gui`` entry point: open the desktop app.

When Qt cannot start here (PySide6 missing, or a Linux session with no display and no
``QT_QPA_PLATFORM`` set: Qt would abort the process), a message says why and, given a FOLDER,
the command-line clustering runs instead, so the user still gets a result.  On Linux under X11
(Qt's ``xcb`` platform) Qt 6 also needs the system library libxcb-cursor, which pip cannot install:
without it Qt aborts with its own cryptic message, so it is looked for first and its absence is one
line naming the package to install on each distribution (exit status 1).
"""

from __future__ import annotations

import argparse
import ctypes.util
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


# The X11 libraries Qt's xcb platform plugin links against that desktop installs may lack (Qt >= 6.5 added
# libxcb-cursor; minimal and container images also lack the xcb-util ones), with the package that holds each:
# (library name for ctypes.util.find_library, Debian/Ubuntu, Fedora, Arch). Qt's own message names only
# libxcb-cursor even when another one is missing.
XCB_LIBRARIES = (
    ("xcb-cursor", "libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    ("xcb-icccm", "libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    ("xcb-keysyms", "libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    ("xcb-image", "libxcb-image0", "xcb-util-image", "xcb-util-image"),
    ("xcb-render-util", "libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    ("xcb-util", "libxcb-util1", "xcb-util", "xcb-util"),
    ("xkbcommon-x11", "libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    ("xcb-shape", "libxcb-shape0", "libxcb", "libxcb"),
    ("xcb-randr", "libxcb-randr0", "libxcb", "libxcb"),
    ("xcb-xkb", "libxcb-xkb1", "libxcb", "libxcb"),
)
INSTALL_COMMANDS = (("Debian/Ubuntu", "sudo apt install"), ("Fedora", "sudo dnf install"), ("Arch", "sudo pacman -S"))


def uses_xcb_platform() -> bool:
    """Whether Qt will start on X11 (``xcb``): Linux, not offscreen / wayland / another platform asked for."""
    if not sys.platform.startswith("linux"):
        return False
    platform = os.environ.get("QT_QPA_PLATFORM", "").strip().lower()
    if platform:
        return platform.split(";")[0].split(":")[0] == "xcb"
    # No platform asked for: Qt 6 takes wayland in a Wayland session, xcb otherwise.
    wayland = bool(os.environ.get("WAYLAND_DISPLAY")) and os.environ.get("XDG_SESSION_TYPE", "") == "wayland"
    return not wayland


def missing_system_libraries() -> list[tuple[str, str, str, str]]:
    """The rows of :data:`XCB_LIBRARIES` whose library cannot be found (empty off X11 or when all are there)."""
    if not uses_xcb_platform():
        return []
    return [row for row in XCB_LIBRARIES if not ctypes.util.find_library(row[0])]


def missing_system_library() -> Optional[str]:
    """The one line to print when Qt's X11 platform lacks system libraries, or None when nothing is missing."""
    missing = missing_system_libraries()
    if not missing:
        return None
    names = ", ".join(f"lib{row[0]}" for row in missing)
    commands = []
    for column, (distro, command) in enumerate(INSTALL_COMMANDS, start=1):
        packages = list(dict.fromkeys(row[column] for row in missing))  # unique, in order
        commands.append(f"{distro}: {command} {' '.join(packages)}")
    return (
        f"imgcluster-gui: the window needs system libraries that are not installed ({names}); install them with "
        f"{'; '.join(commands)}; meanwhile the command line works: imgcluster cluster FOLDER"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcluster-gui", description="Open the imgcluster desktop app.")
    parser.add_argument("folder", nargs="?", help="folder of images to open (and cluster at once)")
    parser.add_argument("--no-run", action="store_true", help="open the folder without starting a run")
    parser.add_argument(
        "--quit-after-run",
        action="store_true",
        help="cluster FOLDER in the window, print one summary line and exit: 0 when the run gave a result "
        "(checks that an installed or bundled app works; packaging/smoke.py uses it)",
    )
    return parser


def run_and_quit(folder: str) -> int:
    """Open the window on ``folder``, run the clustering, print what it gave and exit (no question asked).

    Returns
    -------
    int
        0 when the run succeeded with at least one image, 1 otherwise.
    """
    from .ui.app import create_application, open_main_window

    app = create_application(sys.argv[:1])
    window = open_main_window(folder, run=True, offer_restore=False, offer_reopen=False)

    def report(outcome: str) -> None:
        session = window.session
        n_images = len(session.paths) if session is not None else 0
        n_groups = len([c for c in session.cluster_ids() if c >= 0]) if session is not None else 0
        skipped = len(window.skipped_indicator.skipped())
        print(f"imgcluster-gui: run {outcome}: {n_images} images in {n_groups} groups, {skipped} skipped", flush=True)
        if outcome != "succeeded" and window.last_error is not None:
            print(f"imgcluster-gui: {window.last_error[0]}: {window.last_error[1]}", file=sys.stderr, flush=True)
        # exit(), not quit(): quit() closes the window, which asks whether to save the fresh run.
        app.exit(0 if outcome == "succeeded" and n_images > 0 else 1)

    window.run_controller.finished.connect(report)
    status = app.exec()
    window.shutdown()
    window.settings.mark_clean_exit()  # nothing to restore next time: the run was a check
    return int(status)


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
    missing = missing_system_library()
    if missing is not None:  # checked before the QApplication exists: Qt would abort the process
        print(missing, file=sys.stderr)
        return 1
    if args.quit_after_run:
        if not args.folder:
            print("imgcluster-gui: --quit-after-run needs a FOLDER to cluster", file=sys.stderr)
            return 2
        return run_and_quit(args.folder)
    from .ui.app import run_app

    return run_app(args.folder, run=not args.no_run, argv=sys.argv[:1])


if __name__ == "__main__":
    sys.exit(main())
