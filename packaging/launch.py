"""The bundled app's entry script: PyInstaller runs it as ``__main__``, so it imports the package absolutely
(``imgcluster_gui/__main__.py`` uses relative imports, which need the package around it)."""

import multiprocessing
import sys

from imgcluster_gui.__main__ import main

if __name__ == "__main__":
    # A frozen app on Windows/macOS starts its DataLoader workers by spawning this executable again.
    multiprocessing.freeze_support()
    sys.exit(main())
