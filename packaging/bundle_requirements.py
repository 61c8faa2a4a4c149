"""Write the bundle build's pip requirements and constraints, so pip cannot replace ``TORCH_CPU``'s torch.

``make bundle`` installs CPU-only torch (and torchvision, where ``TORCH_CPU`` names it) first. Installing the app
with its dependencies after that would let pip resolve ``torchvision`` from the default indexes, and a torchvision
wheel from PyPI is a CUDA build that pins (and so pulls) a CUDA torch: gigabytes, and it fails to import beside a
CPU torch. So the app is installed with ``--no-deps`` and this script writes the rest:

- ``REQUIREMENTS``: pyproject's ``dependencies`` plus the named extras, without torch and torchvision;
- ``CONSTRAINTS``: ``torch==<installed>`` (and ``torchvision==<installed>`` when there is one), so a dependency that
  asks for torch (``efficientnet-lite-pytorch`` does) is held to the CPU build already installed.

Run it with the bundle venv's Python (it reads what that environment has installed)::

    build/bundle-venv/bin/python packaging/bundle_requirements.py REQUIREMENTS CONSTRAINTS raw bundle
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

try:
    import tomllib
except ImportError:  # Python 3.10: pip's own copy of tomli (the build venv always has pip)
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

REPO_ROOT = Path(__file__).resolve().parents[1]
# What TORCH_CPU installs; never taken from the app's dependency list.
TORCH_PACKAGES = ("torch", "torchvision")


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def app_requirements(pyproject: Path, extras: Sequence[str]) -> list[str]:
    """pyproject's dependencies and the given extras' lists, torch and torchvision left out."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    listed = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"bundle_requirements: pyproject has no extra {extra!r}")
        listed += optional[extra]
    return [r for r in listed if requirement_name(r) not in TORCH_PACKAGES]


def installed_pins() -> list[str]:
    """``name==version`` for each of torch / torchvision installed in this environment."""
    pins = []
    for name in TORCH_PACKAGES:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    requirements, constraints, extras = Path(args[0]), Path(args[1]), args[2:]
    pins = installed_pins()
    if not pins or not pins[0].startswith("torch=="):
        print("bundle_requirements: no torch in this environment; install TORCH_CPU first", file=sys.stderr)
        return 1
    requirements.parent.mkdir(parents=True, exist_ok=True)
    requirements.write_text("\n".join(app_requirements(REPO_ROOT / "pyproject.toml", extras)) + "\n")
    constraints.write_text("\n".join(pins) + "\n")
    print(f"bundle_requirements: {', '.join(pins)} held; torchvision {'bundled' if len(pins) > 1 else 'absent'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
