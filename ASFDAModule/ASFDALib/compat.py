"""What differs between the Slicer releases the module supports (5.8, 5.10, 5.12; Qt5 and Qt6 builds).

One place for every version test, each naming the behaviour it works around, so the rest of ASFDALib
reads the same on every release.
"""

NEWEST = (99, 0)  # no application (slicer-core in tests, a Python console): the current MRML


def slicerVersion(slicer=None):
    """(major, minor) of the running Slicer; ``NEWEST`` without an application."""
    if slicer is None:
        import slicer
    app = getattr(slicer, "app", None)
    try:
        return int(app.majorVersion), int(app.minorVersion)
    except (AttributeError, TypeError, ValueError):
        return NEWEST


def colorNamesNeedInitialising(slicer=None):
    """Slicer < 5.10 regenerates colour names from the colours until ``SetNamesInitialised(True)``.

    5.8's ``vtkMRMLColorNode::GetColorName``/``GetColorIndexByName`` replace every name with
    "R=... G=... B=... A=..." while the flag is false, and a User table filled with ``SetColor`` never
    sets it. 5.10 removed the lazy naming and made the setter a deprecated no-op that logs an error.
    """
    return slicerVersion(slicer) < (5, 10)


# Slicer 5.8 names an entry without a name "(none)" (its NoName); 5.10+ answers "".
NO_COLOR_NAMES = ("", "(none)")
