"""The stated per-slice cost model (asfda.core.annotation_cost) the demo and the label benchmark report."""

import numpy as np
import pytest
from asfda.core.annotation_cost import NO_COST, SECONDS_PER_EMPTY_SLICE, SECONDS_PER_SLICE, thickest_axis, volume_cost


def test_the_thickest_axis_is_paged_through():
    assert thickest_axis([0.8, 0.8, 3.0]) == 2
    assert thickest_axis([3.0, 0.8, 0.8]) == 0
    assert thickest_axis([1.0, 1.0, 1.0]) == 2  # isotropic: axial, the last axis


def test_a_volume_costs_its_slices_with_and_without_structure():
    label = np.zeros((4, 5, 10), dtype=np.uint8)
    label[1:3, 1:3, 2:5] = 1  # three axial slices show the structure
    cost = volume_cost(label, axis=2)
    assert (cost.slices, cost.structure_slices) == (10, 3)
    assert cost.minutes == pytest.approx((3 * SECONDS_PER_SLICE["correct"] + 7 * SECONDS_PER_EMPTY_SLICE) / 60)
    scratch = volume_cost(label, axis=2, mode="scratch")
    assert scratch.minutes > cost.minutes  # correcting a draft is cheaper than drawing
    total = sum([cost, cost], NO_COST)
    assert (total.slices, total.structure_slices) == (20, 6) and total.minutes == pytest.approx(2 * cost.minutes)


def test_a_sparse_label_costs_only_its_requested_slices():
    from asfda.core.annotation_cost import slices_cost

    label = np.zeros((4, 5, 10), dtype=np.uint8)
    label[1:3, 1:3, 2:5] = 1
    cost = slices_cost(label, 2, [0, 3, 4, 3])  # a repeated index is one slice
    assert (cost.slices, cost.structure_slices) == (3, 2)
    assert cost.minutes == pytest.approx((2 * SECONDS_PER_SLICE["correct"] + SECONDS_PER_EMPTY_SLICE) / 60)
    assert slices_cost(label, 2, range(10)) == volume_cost(label, axis=2)  # every slice: the whole volume
    with pytest.raises(ValueError, match="outside"):
        slices_cost(label, 2, [10])
