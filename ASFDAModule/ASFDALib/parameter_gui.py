"""Binding the module's widgets to its parameter node the same way on every release.

``connectGui(ui)`` returns no tag on Slicer 5.8 (from 5.10 on it does), so a GUI bound there cannot be
disconnected: each scene close bound the widgets to the new scene's parameter node on top of the old
one's. ``connectParametersToGui(mapping)`` returns the tag on every release (5.8 included), so the module
builds the mapping ``connectGui`` would build and calls that instead.
"""

PARAMETER_NAME_PROPERTY = "SlicerParameterName"  # the dynamic property the .ui sets on bound widgets


def parameterWidgets(ui):
    """{parameter name: widget} for every widget of ``ui`` (``slicer.util.childWidgetVariables``) carrying
    the ``SlicerParameterName`` property, as ``connectGui`` collects them."""
    mapping = {}
    for widget in vars(ui).values():
        name = widget.property(PARAMETER_NAME_PROPERTY) if hasattr(widget, "property") else None
        if name:
            mapping[str(name)] = widget
    return mapping


def connectParameterGui(wrapper, ui):
    """Bind ``ui`` to ``wrapper``; returns the tag ``wrapper.disconnectGui`` takes (never None)."""
    return wrapper.connectParametersToGui(parameterWidgets(ui))
