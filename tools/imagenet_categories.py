"""Write ``imgcluster_gui/core/imagenet_categories.txt``: the 1000 ImageNet-1k class names, one a line.

The names are torchvision's (``torchvision.models._meta._IMAGENET_CATEGORIES``, the list its weights' metadata
carries), in class-index order. :func:`imgcluster_gui.core.naming.imagenet_categories` reads the committed file,
so naming clusters works where torchvision is not installed (the CPU desktop bundle); tests/core/test_naming.py
checks that the file still equals torchvision's list wherever torchvision imports. Run once (data, not code)::

    .venv/bin/python tools/imagenet_categories.py
"""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "imgcluster_gui" / "core" / "imagenet_categories.txt"


def main() -> int:
    from torchvision.models import ResNet18_Weights

    names = [str(name) for name in ResNet18_Weights.IMAGENET1K_V1.meta["categories"]]
    if len(names) != 1000 or any("\n" in name or name != name.strip() for name in names):
        print(f"imagenet_categories: unexpected list ({len(names)} names)", file=sys.stderr)
        return 1
    OUT.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"imagenet_categories: {len(names)} names -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
