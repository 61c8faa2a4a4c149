"""Fuzz ``load_image`` with mutated PNGs and JPEGs: only ImageLoadError comes out, nothing hangs, no black images.

Each case is a seeded mutation of a small real image (byte flips, biased towards the header; truncations;
runs of garbage; one file's header spliced onto another's body), written to a file and decoded twice: by
Pillow alone (``Image.open(...).load()``, the reference) and by :func:`imgcluster_gui.core.dataset.load_image`.
A case is

- ``accepted``: ``load_image`` returned an image (Pillow decoded it too);
- ``refused``: ``load_image`` raised :class:`~imgcluster_gui.core.dataset.ImageLoadError` (its documented class);
- ``mismatch``: ``load_image`` returned an image for bytes Pillow itself refuses (the black-image bug);
- ``wrong_error``: another exception type came out;
- ``hang``: one call ran past ``--hang-seconds``.

It also checks that every warning Pillow gave during a ``load_image`` call names the file.
``tests/core/test_load_image_fuzz.py`` runs a few hundred cases in CI; this script runs more::

    .venv/bin/python -m benchmarks.fuzz_images [--count 2000] [--seed 0] [--hang-seconds 5]
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import signal
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from PIL import Image

from imgcluster_gui.core.dataset import ImageLoadError, load_image

OUTCOMES = ("accepted", "refused", "mismatch", "wrong_error", "hang")
# Both decoders refuse more than this (a flipped size byte must not allocate gigabytes in CI).
FUZZ_MAX_PIXELS = 4_000_000
_PILLOW_FOLDER = os.path.dirname(Image.__file__)


def seed_images() -> dict[str, bytes]:
    """Small real images to mutate: PNGs with and without EXIF, a JPEG with an EXIF orientation, a palette PNG."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: load_image transposes it
    seeds = {}
    for name, image_format, extra in (
        ("png", "PNG", {}),  # no EXIF: the common PNG, whose EXIF lookup decodes the pixels
        ("png_exif", "PNG", {"exif": exif.tobytes()}),
        ("jpeg", "JPEG", {"exif": exif.tobytes()}),
    ):
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, image_format, **extra)
        seeds[name] = buffer.getvalue()
    palette = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] // 16, "L").convert("P").save(palette, "PNG", transparency=3)
    seeds["palette_png"] = palette.getvalue()
    return seeds


def _flip(rng: np.random.Generator, data: bytearray, count: int) -> None:
    for _ in range(count):
        # Half the flips land in the first 64 bytes, where the headers and sizes are.
        limit = min(len(data), 64) if rng.random() < 0.5 else len(data)
        data[int(rng.integers(0, limit))] ^= int(rng.integers(1, 256))


def mutate(rng: np.random.Generator, seeds: dict[str, bytes], name: str) -> tuple[str, bytes]:
    """One mutation of ``seeds[name]``: ``(kind, bytes)``."""
    original = seeds[name]
    data = bytearray(original)
    kind = str(rng.choice(["flip", "flips", "truncate", "garbage", "splice"]))
    if kind == "flip":
        _flip(rng, data, 1)
    elif kind == "flips":
        _flip(rng, data, int(rng.integers(2, 9)))
    elif kind == "truncate":
        data = data[: int(rng.integers(1, len(data)))]
    elif kind == "garbage":
        start = int(rng.integers(8, len(data)))
        length = int(rng.integers(1, 200))
        data[start : start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    else:  # one file's header on another file's body (or on its own body, shifted)
        other = seeds[str(rng.choice(sorted(seeds)))]
        cut = int(rng.integers(8, min(len(original), 200)))
        data = bytearray(original[:cut] + other[int(rng.integers(0, len(other) // 2)) :])
    return kind, bytes(data)


def pillow_accepts(data: bytes, max_pixels: int = FUZZ_MAX_PIXELS) -> bool:
    """Pillow's own verdict: it opens and fully decodes ``data`` (within ``max_pixels``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.size[0] * im.size[1] > max_pixels:
                    return False
                im.load()
        except Exception:  # any refusal, whatever its type
            return False
    return True


class _Hung(BaseException):
    """Raised by the alarm; a BaseException so that load_image's ``except Exception`` cannot swallow it."""


@dataclass
class FuzzReport:
    """Counts per outcome and the cases worth a look."""

    counts: collections.Counter = field(default_factory=collections.Counter)
    reasons: collections.Counter = field(default_factory=collections.Counter)
    problems: list[str] = field(default_factory=list)
    unnamed_warnings: list[str] = field(default_factory=list)
    pillow_warnings: int = 0
    slowest_seconds: float = 0.0
    cases: int = 0


@dataclass
class _Alarm:
    """A SIGALRM after ``seconds`` (Unix main thread only; elsewhere nothing guards against a hang)."""

    seconds: float
    armed: bool = False

    def __enter__(self) -> "_Alarm":
        if hasattr(signal, "setitimer") and self.seconds > 0:
            try:
                signal.signal(signal.SIGALRM, _raise_hung)
                signal.setitimer(signal.ITIMER_REAL, self.seconds)
                self.armed = True
            except ValueError:  # not the main thread
                self.armed = False
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)


def _raise_hung(signum: int, frame: object) -> None:
    raise _Hung()


def _cases(count: int, seed: int) -> Iterator[tuple[str, str, bytes]]:
    rng = np.random.default_rng(seed)
    seeds = seed_images()
    names = sorted(seeds)
    for index in range(count):
        name = names[index % len(names)]
        kind, data = mutate(rng, seeds, name)
        yield name, kind, data


def run_fuzz(count: int, seed: int = 0, folder: Optional[Path] = None, hang_seconds: float = 5.0) -> FuzzReport:
    """Decode ``count`` mutated images with ``load_image`` and Pillow; see the module docstring."""
    report = FuzzReport()
    with tempfile.TemporaryDirectory(dir=folder) as work:
        target = Path(work) / "case.img"
        for name, kind, data in _cases(count, seed):
            report.cases += 1
            target.write_bytes(data)
            reference = pillow_accepts(data)
            outcome, detail = "accepted", ""
            started = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    with _Alarm(hang_seconds):
                        load_image(target, max_pixels=FUZZ_MAX_PIXELS)
                except _Hung:
                    outcome = "hang"
                except ImageLoadError as exc:
                    outcome, detail = "refused", str(exc)
                except Exception as exc:  # the point of the fuzz: nothing else may come out
                    outcome, detail = "wrong_error", f"{type(exc).__name__}: {exc}"
            report.slowest_seconds = max(report.slowest_seconds, time.perf_counter() - started)
            if outcome == "accepted" and not reference:
                outcome = "mismatch"
            report.counts[outcome] += 1
            if outcome == "refused":
                report.reasons[detail.split(":")[0].split(" (")[0]] += 1
            elif outcome != "accepted":
                report.problems.append(f"{outcome} on a {kind} of {name}: {detail or 'returned an image'}")
            for item in caught:
                if os.path.dirname(item.filename) != _PILLOW_FOLDER:
                    continue
                report.pillow_warnings += 1
                if str(target) not in str(item.message):
                    report.unnamed_warnings.append(f"{kind} of {name}: {item.message}")
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="number of mutated images (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mutations (default 0)")
    parser.add_argument("--hang-seconds", type=float, default=5.0, help="a call longer than this is a hang")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run the fuzz and print the counts; exit status 1 when any case is a problem."""
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    report = run_fuzz(args.count, seed=args.seed, hang_seconds=args.hang_seconds)
    print(
        f"{report.cases} mutated images in {time.perf_counter() - started:.1f} s (slowest call "
        f"{report.slowest_seconds * 1000:.0f} ms)"
    )
    for outcome in OUTCOMES:
        print(f"  {outcome:<12} {report.counts[outcome]}")
    print(f"Pillow warnings: {report.pillow_warnings} ({len(report.unnamed_warnings)} without the file name)")
    print("Refusal reasons:")
    for reason, n in report.reasons.most_common(12):
        print(f"  {n:>6}  {reason}")
    for line in report.problems[:50]:
        print(f"PROBLEM: {line}")
    for line in report.unnamed_warnings[:20]:
        print(f"WARNING WITHOUT THE FILE NAME: {line}")
    return 1 if report.problems or report.unnamed_warnings else 0


if __name__ == "__main__":
    raise SystemExit(main())
