"""Slicer 5.8's colour-name behaviour on top of slicer-core's (5.13) MRML.

slicer-core cannot show what finding 1 of issue 20 is about: in 5.8 (``Libs/MRML/Core/vtkMRMLColorNode.cxx``
at v5.8.1), ``GetColorName`` and ``GetColorIndexByName`` first call ``SetNamesFromColors()`` while the node's
``NamesInitialised`` flag is false, which renames every entry "R=0.900 G=0.300 B=0.250 A=1.000" (three
decimals, fixed) and sets the flag. A User table filled with ``SetColor(i, name, ...)`` never sets the flag;
``SetNamesInitialised(True)`` does. From 5.10 on the lazy renaming is gone and the setter is a deprecated
no-op that logs an error.

``ColorNames58`` imitates that for the colour tables of one scene, as the calls Slicer makes with them see
them: the segmentations logic's ``ImportLabelmapToSegmentationNode`` (names read from the labelmap's colour
node) and ``ExportSegmentsToLabelmapNode`` (indices looked up by name). The flag is tracked here, because
slicer-core's setter does nothing but report itself: each call shows up as an ``ErrorEvent`` on the node.
With ``version >= (5, 10)`` nothing is renamed and ``calls`` lists the tables the setter was (wrongly)
called on.
"""

import vtk

_SETTER_MESSAGES = ("SetNamesInitialised()", "NamesInitialisedOn()")


def colorString(rgba):
    return "R={:.3f} G={:.3f} B={:.3f} A={:.3f}".format(*rgba)


class ColorNames58:
    def __init__(self, slicer, scene, version=(5, 8)):
        self.slicer, self.scene, self.version = slicer, scene, tuple(version)
        self.calls = []  # names of the colour nodes SetNamesInitialised was called on
        self._initialised = set()  # ids of nodes whose flag is set
        self._realLogic = slicer.vtkSlicerSegmentationsModuleLogic
        self._sceneTag = scene.AddObserver(scene.NodeAddedEvent, self._onNodeAdded)
        slicer.vtkSlicerSegmentationsModuleLogic = self._proxyLogic()

    def close(self):
        self.scene.RemoveObserver(self._sceneTag)
        self.slicer.vtkSlicerSegmentationsModuleLogic = self._realLogic

    # -- the flag ------------------------------------------------------------------------------

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeAdded(self, scene, event, node):
        if node is not None and node.IsA("vtkMRMLColorNode"):
            node.AddObserver(vtk.vtkCommand.ErrorEvent, self._makeErrorObserver(node))

    def _makeErrorObserver(self, node):
        nodeId = node.GetID()

        def onError(caller, event, message=None):
            if message and any(m in message for m in _SETTER_MESSAGES):
                self.calls.append(caller.GetName())
                self._initialised.add(nodeId)

        onError.CallDataType = vtk.VTK_STRING
        return onError

    # -- 5.8's lazy renaming -------------------------------------------------------------------

    def regenerate(self, colorNode):
        """What 5.8's first GetColorName/GetColorIndexByName does to a node whose flag is false."""
        if colorNode is None or self.version >= (5, 10) or colorNode.GetID() in self._initialised:
            return
        rgba = [0.0] * 4
        for i in range(colorNode.GetNumberOfColors()):
            colorNode.GetColor(i, rgba)
            colorNode.SetColorName(i, colorString(rgba))
        self._initialised.add(colorNode.GetID())

    def _proxyLogic(self):
        real, shim = self._realLogic, self

        class Logic:
            def __getattr__(self, name):
                return getattr(real, name)

            @staticmethod
            def ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode, *args):
                display = labelmapNode.GetDisplayNode()
                shim.regenerate(display.GetColorNode() if display is not None else None)
                return real.ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode, *args)

            @staticmethod
            def ExportSegmentsToLabelmapNode(*args):
                for arg in args:
                    if isinstance(arg, shim.slicer.vtkMRMLColorTableNode):
                        shim.regenerate(arg)
                return real.ExportSegmentsToLabelmapNode(*args)

        return Logic()
