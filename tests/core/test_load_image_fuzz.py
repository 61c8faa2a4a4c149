"""A few hundred seeded mutations of real PNGs and JPEGs through ``load_image`` (the longer run is a benchmark).

Only the documented error class comes out, no call hangs, every Pillow warning names its file, and no image
comes back for bytes Pillow itself refuses (before the fix, a PNG whose pixels were garbage came back black).
``python -m benchmarks.fuzz_images --count 2000`` runs the same check at length.
"""

from __future__ import annotations

from benchmarks.fuzz_images import run_fuzz


def test_mutated_images_give_image_load_error_or_a_real_image(tmp_path):
    report = run_fuzz(600, seed=0, folder=tmp_path, hang_seconds=10.0)
    assert report.cases == 600
    assert report.problems == []  # no mismatch (an image for refused bytes), no other exception, no hang
    assert report.counts["mismatch"] == report.counts["wrong_error"] == report.counts["hang"] == 0
    assert report.pillow_warnings > 0 and report.unnamed_warnings == []  # each warning names its file
    # The mutations reach both sides: some survive (a flipped pixel byte), most are refused, for specific reasons.
    assert report.counts["accepted"] > 10 and report.counts["refused"] > 200
    assert report.reasons["corrupt image data"] > 0 and report.reasons["truncated image file"] > 0
