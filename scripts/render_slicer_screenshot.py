#!/usr/bin/env python3
"""Render the extension's screenshot: the ASFDA module panel beside Slicer's views showing a case and its prediction.

    QT_QPA_PLATFORM=offscreen PYTHONPATH=ASFDAExtension .venv/bin/python scripts/render_slicer_screenshot.py

Nothing is painted by hand: the case is read the way the module reads it (``ASFDALib.case_reading`` and
``segmentation_io`` into real MRML nodes from slicer-core), and the views are drawn by Slicer's own slice logic
and displayable managers (the ones Slicer's slice and 3D views use) in offscreen VTK windows, laid out as
Slicer's "Conventional" layout (3D view over the Red, Yellow and Green slice views). The module panel is the
real ``ASFDA.ui`` loaded offscreen with PySide6 (``Testing/slicer/test_ui.renderUi``). The volume is a seeded
synthetic abdomen-like phantom (no patient data), the prediction a perturbed copy of its organ masks.
Writes ``Resources/Screenshots/ASFDA-slicer.png`` (``--out`` to change).
"""

import argparse
import os
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "Resources" / "Screenshots" / "ASFDA-slicer.png"
LABELS = {"background": 0, "liver": 1, "tumor": 2}
TUMOR = (145, 80, 32)  # (i, j, k): where the slice views cross
SIZE = (1640, 1160)  # the whole window
PANEL_WIDTH = 520
TOOLBAR_HEIGHT = 44
BAR_HEIGHT = 22  # a slice view's controller bar
VIEW_COLORS = {"Red": (243, 74, 51), "Yellow": (237, 213, 76), "Green": (110, 176, 75), "1": (116, 131, 233)}


def _offscreenVtk():
    # VTK's default X window cannot open without a display; EGL's surfaceless platform needs none.
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")


def phantom(seed=7):
    """(CT-like volume in HU, prediction labelmap), both (k, j, i) arrays, and the spacing in mm."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (60, 160, 200)
    # (k, j, i) with the identity direction: i to the patient's right (the screen's left in Slicer), j anterior,
    # k superior.
    k, j, i = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    ct = np.full(shape, -1000.0, dtype=np.float32)
    body = ((i - 100) / 92) ** 2 + ((j - 80) / 66) ** 2 < 1
    ct[body] = -90  # fat
    muscle = ((i - 100) / 84) ** 2 + ((j - 80) / 58) ** 2 < 1
    ct[muscle] = 45
    liver = ((i - 138) / 40) ** 2 + ((j - 88) / 34) ** 2 + ((k - 30) / 26) ** 2 < 1
    ct[liver] = 95
    for cx in (66, 134):  # kidneys
        ct[((i - cx) / 13) ** 2 + ((j - 48) / 17) ** 2 + ((k - 32) / 18) ** 2 < 1] = 150
    ct[(((i - 100) / 13) ** 2 + ((j - 38) / 13) ** 2 < 1) & (k % 8 < 6)] = 700  # vertebrae and their discs
    ct[((i - 88) / 7) ** 2 + ((j - 60) / 7) ** 2 < 1] = 210  # aorta
    tumor = ((i - TUMOR[0]) / 10) ** 2 + ((j - TUMOR[1]) / 9) ** 2 + ((k - TUMOR[2]) / 8) ** 2 < 1
    ct[tumor] = 55
    ct += rng.normal(0, 12, shape).astype(np.float32)
    # The model's prediction: the organs, a little off (what the clinician corrects).
    predicted = np.zeros(shape, dtype=np.uint8)
    predicted[((i - 136) / 41) ** 2 + ((j - 86) / 33) ** 2 + ((k - 30) / 25) ** 2 < 1] = 1
    predicted[((i - TUMOR[0] - 2) / 8) ** 2 + ((j - TUMOR[1] + 2) / 8) ** 2 + ((k - TUMOR[2]) / 7) ** 2 < 1] = 2
    return ct.astype(np.int16), predicted, (1.6, 1.6, 4.0)


def loadCase(slicer, folder):
    """The phantom written as the worker sends a case and read back as the module does."""
    import nibabel
    import numpy as np
    from ASFDALib import case_reading, segmentation_io

    ct, predicted, spacing = phantom()
    affine = np.diag([*spacing, 1.0])
    imagePath, predictionPath = folder / "image.nii.gz", folder / "prediction.nii.gz"
    nibabel.save(nibabel.Nifti1Image(ct.T, affine), str(imagePath))  # nibabel takes (i, j, k)
    nibabel.save(nibabel.Nifti1Image(predicted.T, affine), str(predictionPath))
    prepared = case_reading.prepareCase(str(imagePath), str(predictionPath), LABELS)
    scene = slicer.mrmlScene
    volume = segmentation_io.loadScalarVolume(scene, prepared.image, "case-017", prepared.windowLevel)
    volume.GetDisplayNode().SetWindowLevel(400, 50)  # an abdomen window, as a radiologist would set it
    segmentation = segmentation_io.loadSegmentationFile(scene, prepared.segmentation, "case-017 label")
    segmentation.CreateClosedSurfaceRepresentation()  # "Show 3D"
    display = segmentation.GetDisplayNode()
    display.SetOpacity2DFill(0.45)
    display.SetSegmentOpacity3D(segmentation.GetSegmentation().GetSegmentIdBySegmentName("liver"), 0.4)
    return volume, segmentation


def _scene(slicer):
    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkMRMLApplicationLogic()
    appLogic.SetMRMLScene(scene)
    segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentationsLogic.SetMRMLScene(scene)
    volumesLogic = slicer.vtkSlicerVolumesLogic()
    volumesLogic.SetMRMLScene(scene)
    colorLogic = slicer.vtkMRMLColorLogic()
    colorLogic.SetMRMLScene(scene)
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(segmentations=types.SimpleNamespace(logic=lambda: segmentationsLogic),
                                           volumes=types.SimpleNamespace(logic=lambda: volumesLogic))
    return scene, appLogic, [segmentationsLogic, volumesLogic, colorLogic]


def _grab(vtk, renderWindow):
    """The window's pixels as an RGB PIL image."""
    from PIL import Image
    from vtk.util import numpy_support

    renderWindow.Render()
    capture = vtk.vtkWindowToImageFilter()
    capture.SetInput(renderWindow)
    capture.Update()
    image = capture.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[::-1, :, :3]
    return Image.fromarray(pixels.copy())


def _window(vtk, size):
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    renderer = vtk.vtkRenderer()
    window.AddRenderer(renderer)
    interactor = vtk.vtkRenderWindowInteractor()  # displayable managers expect one
    interactor.SetRenderWindow(window)
    return window, renderer, interactor


def renderSliceView(slicer, vtk, appLogic, layoutName, orientation, volume, crossing, size, keep):
    factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(appLogic)
    if not factory.IsDisplayableManagerRegistered("vtkMRMLSegmentationsDisplayableManager2D"):
        factory.RegisterDisplayableManager("vtkMRMLSegmentationsDisplayableManager2D")
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLApplicationLogic(appLogic)
    logic.SetMRMLScene(slicer.mrmlScene)
    sliceNode = logic.AddSliceNode(layoutName)
    sliceNode.SetOrientation(orientation)
    logic.GetSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
    sliceNode.SetDimensions(size[0], size[1], 1)
    logic.FitSliceToAll()
    sliceNode.JumpSliceByOffsetting(*crossing)  # through the tumour, as after a click on it
    window, renderer, interactor = _window(vtk, size)
    mapper = vtk.vtkImageMapper()  # the blended layers, as a slice view shows them
    mapper.SetInputConnection(logic.GetImageDataConnection())
    mapper.SetColorWindow(255)
    mapper.SetColorLevel(127.5)
    actor = vtk.vtkActor2D()
    actor.SetMapper(mapper)
    renderer.AddViewProp(actor)
    managers = factory.InstantiateDisplayableManagers(renderer)
    managers.SetMRMLDisplayableNode(sliceNode)
    keep += [logic, window, renderer, interactor, managers]
    axis = {"Axial": "S", "Sagittal": "R", "Coronal": "A"}[orientation]  # what Slicer's bar names
    return _grab(vtk, window), f"{axis}: {logic.GetSliceOffset():.1f}mm"


def renderThreeDView(slicer, vtk, appLogic, size, keep):
    factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(appLogic)
    for name in ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                 "vtkMRMLSegmentationsDisplayableManager3D"):
        if not factory.IsDisplayableManagerRegistered(name):
            factory.RegisterDisplayableManager(name)
    view = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLViewNode")
    view.SetLayoutName("1")
    window, renderer, interactor = _window(vtk, size)
    managers = factory.InstantiateDisplayableManagers(renderer)
    managers.SetMRMLDisplayableNode(view)
    renderer.ResetCamera()
    camera = renderer.GetActiveCamera()  # Slicer's default: from the front, superior up
    camera.Azimuth(-35)
    camera.Elevation(15)
    camera.OrthogonalizeViewUp()
    renderer.ResetCamera()
    camera.Zoom(1.2)
    keep += [window, renderer, interactor, managers, view]
    return _grab(vtk, window)


def renderPanel(target, tmp, segmentation):
    """The module panel: the real .ui, the worklist filled, the opened case's status and segments."""
    from PySide6.QtWidgets import QApplication, QComboBox, QLabel, QLineEdit, QPushButton

    sys.path.insert(0, str(REPO / "Testing" / "slicer"))
    import test_ui

    QApplication.instance() or QApplication([])
    segments = segmentation.GetSegmentation()
    swatches = []
    for n in range(segments.GetNumberOfSegments()):
        segment = segments.GetNthSegment(n)
        r, g, b = (int(255 * c) for c in segment.GetColor())
        swatches.append(f'<span style="color:#{r:02x}{g:02x}{b:02x}">&#9632;</span> {segment.GetName()}')
    editorText = ("<b>Segment Editor</b> &nbsp; Paint &middot; Draw &middot; Erase &middot; Threshold &middot; "
                  "Scissors<br>" + " &nbsp; ".join(swatches))

    def fill(widget):
        widget.findChild(QLabel, "caseStatusLabel").setText(
            "case-017: prediction of model v2. Correct it, then submit.")
        widget.findChild(QLabel, "segmentEditorWidget").setText(editorText)
        widget.findChild(QLabel, "workerStatusLabel").setText(
            "Connected to http://127.0.0.1:8765 as Dr. Ada (cuda, model v2)")
        widget.findChild(QLineEdit, "annotatorLineEdit").setText("Dr. Ada")
        for name in ("connectButton", "rankButton", "nextCaseButton", "submitLabelButton", "adaptButton",
                     "activateModelButton", "stopLocalWorkerButton"):
            widget.findChild(QPushButton, name).setEnabled(True)
        widget.findChild(QPushButton, "startLocalWorkerButton").setEnabled(False)
        widget.findChild(QPushButton, "nextSliceButton").setVisible(False)  # a whole-volume case
        combo = widget.findChild(QComboBox, "modelVersionComboBox")
        combo.addItems(["v2 (active)", "v1", "v0 (base)"])
        widget.findChild(QLabel, "activeModelLabel").setText("Active model: v2")

    return test_ui.renderUi(target, tmp, fill=fill)


def compose(panel, threeD, slices, out):
    """Slicer's window: toolbar, module panel on the left, the Conventional layout on the right."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = SIZE
    canvas = Image.new("RGB", SIZE, (236, 236, 236))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(14)
    draw.rectangle([0, 0, width, TOOLBAR_HEIGHT], fill=(214, 214, 214))
    draw.text((12, 13), "File  Edit  View  Help", fill=(20, 20, 20), font=font)
    draw.rounded_rectangle([200, 9, 420, 35], 4, fill=(250, 250, 250), outline=(160, 160, 160))
    draw.text((210, 13), "Modules:  ASFDA", fill=(20, 20, 20), font=font)
    panel = panel.crop((0, 0, PANEL_WIDTH, min(panel.height, height - TOOLBAR_HEIGHT)))
    canvas.paste(panel, (0, TOOLBAR_HEIGHT))
    left, top = PANEL_WIDTH + 4, TOOLBAR_HEIGHT + 2
    viewWidth = width - left
    threeDHeight = (height - top) // 2
    _paste(draw, canvas, threeD, "1", "", (left, top), font)
    sliceWidth = viewWidth // 3
    for n, (name, (image, offset)) in enumerate(slices.items()):
        _paste(draw, canvas, image, name, offset, (left + n * sliceWidth, top + threeDHeight), font)
    out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours are plenty for grey slices and flat widgets, and keep the PNG a few hundred kB.
    canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return canvas.size


def _paste(draw, canvas, image, name, offset, origin, font):
    x, y = origin
    color = VIEW_COLORS[name]
    draw.rectangle([x, y, x + image.width - 1, y + BAR_HEIGHT - 1], fill=color)
    label = name[0] if name != "1" else "1"
    draw.text((x + 6, y + 3), label, fill=(255, 255, 255), font=font)
    draw.text((x + 30, y + 3), offset, fill=(20, 20, 20), font=font)
    canvas.paste(image, (x, y + BAR_HEIGHT))
    draw.rectangle([x, y, x + image.width - 1, y + BAR_HEIGHT + image.height - 1], outline=color, width=2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    _offscreenVtk()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO / "ASFDAModule"))
    import slicer
    import vtk

    keep = []
    scene, appLogic, logics = _scene(slicer)
    with tempfile.TemporaryDirectory() as tmp:
        volume, segmentation = loadCase(slicer, Path(tmp))
        width, height = SIZE
        viewWidth = width - PANEL_WIDTH - 4
        viewHeight = (height - TOOLBAR_HEIGHT - 2) // 2 - BAR_HEIGHT
        threeD = renderThreeDView(slicer, vtk, appLogic, (viewWidth, viewHeight), keep)
        sliceSize = (viewWidth // 3 - 2, viewHeight)
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        crossing = matrix.MultiplyPoint((*TUMOR, 1.0))[:3]
        slices = {name: renderSliceView(slicer, vtk, appLogic, name, orientation, volume, crossing, sliceSize, keep)
                  for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"))}
        from PIL import Image

        panelPath = Path(tmp) / "panel.png"
        renderPanel(panelPath, tmp, segmentation)
        panel = Image.open(panelPath).convert("RGB")
        size = compose(panel, threeD, slices, args.out)
    print(f"{args.out}: {size[0]}x{size[1]}")
    del keep, logics, scene
    return 0


if __name__ == "__main__":
    sys.exit(main())
