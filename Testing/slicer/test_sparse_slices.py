"""Sparse annotation rules of the module (ASFDALib/sparse_slices.py): done slices, next slice, mask, jump point."""

import numpy as np
import pytest
from ASFDALib.label_export import LabelSnapshot, composeLabel
from ASFDALib.sparse_slices import (
    PendingSparseLabel,
    SliceRequest,
    SparseCase,
    annotatedMask,
    doneSlices,
    labelPlanes,
    nextRequestedSlice,
    onVolumeGrid,
    progressText,
    requestTooltip,
    sliceCenterRas,
    viewForAxis,
)

SHAPE = (6, 5, 4)  # (k, j, i)


def test_request_from_reply_sorts_and_rejects_malformed():
    assert SliceRequest.fromReply(None) is None
    assert SliceRequest.fromReply({"axis": 2, "indices": [4, 1, 4], "rule": "even"}) == SliceRequest(2, (1, 4))
    for bad in ({"axis": 3, "indices": [1]}, {"axis": 0, "indices": []}, {"axis": 0, "indices": [-1]},
                {"axis": 1, "indices": ["2"]}):
        with pytest.raises(ValueError, match="requested slice"):
            SliceRequest.fromReply(bad)


def test_request_outside_the_volume_is_one_line():
    SliceRequest(2, (0, 5)).checkFits(SHAPE)
    with pytest.raises(ValueError, match=r"^Requested slice 6 lies outside the volume's 6 slices along axis 2"):
        SliceRequest(2, (1, 6)).checkFits(SHAPE)
    with pytest.raises(ValueError, match="4 slices along axis 0"):
        SliceRequest(0, (4,)).checkFits(SHAPE)
    with pytest.raises(ValueError, match="Requested slice -1 lies outside"):  # a flip can place one below 0
        SliceRequest(0, (-1, 2)).checkFits(SHAPE)


def planesOf(voxels, request):
    return {i: np.take(voxels, i, axis=2 - request.axis) for i in request.indices}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_done_is_edited_or_accepted_not_prefilled(axis):
    opened = np.zeros(SHAPE, np.uint8)
    opened[...] = 1  # the prediction covers every slice: not the clinician's work
    request = SliceRequest(axis, (0, 2, 3))
    current = opened.copy()
    np.moveaxis(current, 2 - axis, 0)[2][0, 0] = 0  # one voxel erased on IJK slice 2 of `axis`
    np.moveaxis(current, 2 - axis, 0)[1][0, 0] = 0  # an edit off the request does not count
    before, after = planesOf(opened, request), planesOf(current, request)
    assert doneSlices(before, before, request) == []
    assert doneSlices(after, before, request) == [2]
    assert doneSlices(after, before, request, accepted={3, 1}) == [2, 3]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_label_planes_equal_the_composed_label_slices(axis):
    """Two layers with extents off the volume's (one reaching outside it), later segments on top."""
    rng = np.random.default_rng(axis)
    first = rng.integers(0, 3, size=(4, 3, 3)).astype(np.uint8)  # (k, j, i) over extent i 1..3, j 2..4, k 1..4
    second = rng.integers(0, 2, size=(7, 6, 5)).astype(np.uint8)  # i -1..3, j 0..5, k 0..6: beyond the volume
    snapshot = LabelSnapshot(SHAPE, np.eye(4), [(first, (1, 3, 2, 4, 1, 4)), (second, (-1, 3, 0, 5, 0, 6))],
                             [(0, 1, 1), (0, 2, 2), (1, 1, 3)])
    request = SliceRequest(axis, tuple(range(SHAPE[2 - axis])))
    planes = labelPlanes(snapshot, request)
    composed = composeLabel(snapshot)
    assert composed.any() and sorted(planes) == list(request.indices)
    for index, plane in planes.items():
        np.testing.assert_array_equal(plane, np.take(composed, index, axis=2 - axis))


def test_next_requested_slice_wraps():
    request = SliceRequest(1, (2, 5, 9))
    assert [nextRequestedSlice(request, a) for a in (None, 0, 2, 5, 8, 9, 40)] == [2, 2, 5, 9, 9, 2, 2]


def test_sparse_case_next_slice_accepts_the_slice_it_leaves():
    request = SliceRequest(2, (1, 4))
    opened = planesOf(np.zeros(SHAPE, np.uint8), request)
    case = SparseCase(request, SHAPE, opened)
    assert case.advance() == 1 and case.accepted == set()  # nothing was shown before
    assert case.advance() == 4 and case.accepted == {1}
    assert case.update(opened) == [1]
    assert case.text() == "requested slices: 1 of 2 done (axis 2: 1 done, 4)"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_mask_marks_whole_done_slices(axis):
    mask = annotatedMask(SHAPE, SliceRequest(axis, (0, 1, 3)), [1, 3])
    assert mask.dtype == np.uint8 and mask.shape == SHAPE
    planes = np.moveaxis(mask, 2 - axis, 0)
    assert [bool(planes[i].all()) for i in range(planes.shape[0])] == [i in (1, 3) for i in range(planes.shape[0])]
    assert planes.sum() == 2 * planes[0].size


def test_slice_centre_in_ras_follows_ijk_to_ras():
    ijkToRas = np.array([[-2.0, 0, 0, 10], [0, -1.5, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]])
    # centre of i (0..3) and j (0..4), k = 2
    assert sliceCenterRas(ijkToRas, SHAPE, 2, 2) == pytest.approx((10 - 3.0, 20 - 3.0, -5 + 6.0))
    assert sliceCenterRas(ijkToRas, SHAPE, 0, 3) == pytest.approx((10 - 6.0, 20 - 3.0, -5 + 7.5))


def test_view_for_axis_is_the_one_whose_normal_matches():
    normals = {"Red": (0, 0, 1), "Yellow": (1, 0, 0), "Green": (0, 1, 0)}
    axial = np.diag([-1.0, -1.0, 2.5, 1.0])
    assert [viewForAxis(axial, a, normals) for a in (0, 1, 2)] == ["Yellow", "Green", "Red"]
    # A volume stored sagittally: its k axis runs left-right.
    sagittal = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    assert viewForAxis(sagittal, 2, normals) == "Yellow"
    assert viewForAxis(axial, 2, {}) is None


def test_progress_text_marks_done_slices():
    assert progressText(SliceRequest(2, (3, 7, 12, 15)), [3, 12]) == (
        "requested slices: 2 of 4 done (axis 2: 3 done, 7, 12 done, 15)")


def test_pending_sparse_label_keeps_done_slices_and_writes_the_mask(tmp_path):
    ijkToRas = np.diag([1.5, 1.5, 2.0, 1.0])
    voxels = np.ones(SHAPE, np.uint8)  # the prediction everywhere: foreground off the request must go
    snapshot = LabelSnapshot(SHAPE, ijkToRas, [(voxels, (0, 3, 0, 4, 0, 5))], [(0, 1, 2)])
    mask = annotatedMask(SHAPE, SliceRequest(2, (1, 4)), [4])
    label = PendingSparseLabel(str(tmp_path / "c-label.nrrd"), snapshot, mask, str(tmp_path / "c-mask.nrrd"))
    assert label.finish() == str(tmp_path / "c-label.nrrd") and label.snapshot is None
    nrrd = pytest.importorskip("nrrd")
    (written, _header), (writtenMask, maskHeader) = nrrd.read(label.path), nrrd.read(label.maskPath)
    # pynrrd answers (i, j, k); the arrays here are (k, j, i)
    np.testing.assert_array_equal(writtenMask.T, mask)
    np.testing.assert_array_equal(written.T, 2 * mask)
    assert writtenMask.dtype == np.uint8
    np.testing.assert_allclose(np.abs(maskHeader["space directions"]), np.diag([1.5, 1.5, 2.0]))


def test_on_volume_grid_follows_flips_and_swaps():
    request = SliceRequest(2, (1, 3, 6))
    source = np.diag([-1.5, 1.5, 2.0, 1.0])
    flipped = source @ np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 7], [0, 0, 0, 1]])  # k' = 7 - k
    assert onVolumeGrid(request, source, source) == (request, {1: 1, 3: 3, 6: 6})
    assert onVolumeGrid(request, source, flipped) == (SliceRequest(2, (1, 4, 6)), {6: 1, 4: 3, 1: 6})
    swapped = source[:, [2, 1, 0, 3]]  # the volume's i is the worker's k
    assert onVolumeGrid(request, source, swapped)[0] == SliceRequest(0, (1, 3, 6))
    with pytest.raises(ValueError, match="not the worker's image grid"):
        onVolumeGrid(request, source, source @ np.diag([1.0, 1.0, 2.0, 1.0]))


def test_progress_text_uses_the_workers_numbers():
    case = SparseCase(SliceRequest(2, (1, 4, 6)), SHAPE, {}, names={6: 1, 4: 3, 1: 6}, sourceAxis=2)
    case.done = [6]  # volume slice 6: the worker's slice 1
    assert case.text() == "requested slices: 1 of 3 done (axis 2: 1 done, 3, 6)" and case.number(4) == 3


def test_request_tooltip():
    assert requestTooltip({"axis": 1, "indices": [9, 2]}) == "Requested slices along axis 1: 2, 9"
    assert requestTooltip(None) == "" and requestTooltip({"axis": 5, "indices": [1]}) == ""
