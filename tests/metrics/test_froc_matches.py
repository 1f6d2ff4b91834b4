"""FROCMetric.match + add_matches (match each image once, add it per bootstrap resample) equals update."""

from __future__ import annotations

import numpy as np

from cxrkd_monai.metrics.froc import FROCMetric


def test_match_then_add_equals_update_in_any_order_with_repeats():
    rng = np.random.default_rng(0)
    images = []
    for _ in range(6):
        boxes = np.array([[10, 10, 30, 30, 0], [60, 60, 80, 90, 1]], dtype=float)[: rng.integers(0, 3)]
        points = np.array([[40.0, 40.0, 0], [70.0, 20.0, 1]])
        detections = [np.c_[rng.uniform(0, 100, (4, 2)), rng.uniform(0.05, 1, 4)] for _ in range(2)]
        images.append((detections, boxes, points, float(rng.uniform(0, 5))))
    resample = [3, 0, 3, 5, 1, 1]  # a bootstrap resample: images repeat
    updated, added = FROCMetric(2, point_radius=15), FROCMetric(2, point_radius=15)
    matches = [updated.match(d, b, p, min_hit_radius=r) for d, b, p, r in images]
    for i in resample:
        detections, boxes, points, radius = images[i]
        updated.update(detections, boxes, points, min_hit_radius=radius)
        added.add_matches(matches[i])
    for name in ("0", "1"):
        expected, actual = updated.compute()[name], added.compute()[name]
        assert actual["num_lesions"] == expected["num_lesions"] and actual["num_images"] == expected["num_images"] == 6
        np.testing.assert_array_equal(actual["sensitivity"], expected["sensitivity"])
        np.testing.assert_array_equal(actual["fps_per_image"], expected["fps_per_image"])
        assert actual["score"] == expected["score"]
