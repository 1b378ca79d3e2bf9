"""First-use installation of what a worker running in Slicer's own Python needs.

Nothing is installed at import or at module load: the user presses "Start local worker",
sees what is missing and confirms. torch goes through light-the-torch, as the PyTorch extension does (it picks
the CUDA or CPU wheel that fits the driver), in a child process; the rest through Slicer's pip helpers. The
ranges below are the engine's own (pyproject.toml); a test keeps them identical.
"""

import logging
import os

TORCH_REQUIREMENT = ">=2.2"
LIGHT_THE_TORCH = "light-the-torch>=0.5"  # what the PyTorch extension installs torch with

# requirement -> import name, same specifiers (and markers) as the engine's pyproject.toml
WORKER_REQUIREMENTS = {
    "monai>=1.4,<1.7": "monai",
    "einops>=0.7": "einops",
    "numpy>=1.24": "numpy",
    "nibabel>=5.0": "nibabel",
    "pynrrd>=1.0": "nrrd",
    "pydicom>=2.4": "pydicom",
    "scikit-learn>=1.3": "sklearn",
    "scikit-image>=0.22": "skimage",
    "scipy>=1.10": "scipy",
    "tqdm>=4.60": "tqdm",
    "fastapi>=0.110": "fastapi",
    "uvicorn>=0.27": "uvicorn",
    "python-multipart>=0.0.9": "multipart",
    "pydantic>=2.5": "pydantic",
    "psutil>=5.9": "psutil",
    "dicomweb-client>=0.59": "dicomweb_client",
    # Every highdicom >= 0.23 needs Python >= 3.10: Slicer 5.8 (Python 3.9) runs without PACS write-back.
    "highdicom>=0.23; python_version >= '3.10'": "highdicom",
    "filelock>=3.12": "filelock",
    "pyyaml>=6.0": "yaml",
}
# Needed only for one feature: installed in a step of its own, whose failure leaves the rest working.
OPTIONAL_REQUIREMENTS = {"highdicom": "PACS write-back of clinician labels as DICOM SEG"}


class DependencyError(RuntimeError):
    pass


def _packaging():
    """``packaging`` (requirements, versions, markers): Slicer's own copy, or the one its pip carries."""
    try:
        import packaging
        import packaging.requirements  # noqa: F401
    except ImportError:
        from pip._vendor import packaging
        from pip._vendor.packaging import requirements  # noqa: F401
    return packaging


def parseRequirement(text):
    return _packaging().requirements.Requirement(text)


def applies(requirement, pythonVersion=None):
    """Whether the requirement's marker holds for ``pythonVersion`` ("3.9"; None: this interpreter)."""
    req = parseRequirement(requirement) if isinstance(requirement, str) else requirement
    if req.marker is None:
        return True
    environment = None if pythonVersion is None else {"python_version": pythonVersion,
                                                      "python_full_version": pythonVersion + ".0"}
    return req.marker.evaluate(environment)


def installedVersion(distributionName):
    from importlib import metadata

    try:
        return metadata.version(distributionName)
    except metadata.PackageNotFoundError:
        return None


def satisfied(requirement):
    """Installed and in range: the distribution's version is checked, not only that the name imports."""
    req = parseRequirement(requirement)
    version = installedVersion(req.name)
    return version is not None and req.specifier.contains(version, prereleases=True)


def missingRequirements(requirements=None):
    """Requirements that apply to this Python and are absent or out of range (marker text dropped)."""
    requirements = WORKER_REQUIREMENTS if requirements is None else requirements
    missing = []
    for text in requirements:
        req = parseRequirement(text)
        if applies(req) and not satisfied(text):
            missing.append(f"{req.name}{req.specifier}")
    return missing


def torchInstalled():
    return installedVersion("torch") is not None


def shippedConstraints():
    """Constraints that hold every installed distribution at its version: an install adds, never upgrades.

    Slicer's own packages (pydicom 2.4.4 in 5.10, which its DICOM module was tested with; highdicom 0.27 with
    pydicom 3.0.2 in 5.12) change Slicer itself when upgraded; so does anything another extension installed.
    """
    from importlib import metadata

    pins = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").strip()
        if name and dist.version:
            pins.setdefault(name.lower(), f"{name}=={dist.version}")
    return [pins[name] for name in sorted(pins)]


def conflictsWithShipped(requirements):
    """Requirements an installed distribution's version rules out (installing them would upgrade it)."""
    conflicts = []
    for text in requirements:
        req = parseRequirement(text)
        version = installedVersion(req.name)
        if version is not None and not req.specifier.contains(version, prereleases=True):
            conflicts.append(f"{req.name} {version} is installed, the worker needs {req.name}{req.specifier}")
    return conflicts


def writeConstraintsFile(folder):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "asfda-constraints.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(shippedConstraints()) + "\n")
    return path


def bundledWorkerRoot(moduleDir):
    """Folder holding ``pyproject.toml`` and ``ASFDAExtension/asfda`` for this module.

    Installed extensions carry it in ``ASFDAWorker/`` next to the module (see the module's
    CMakeLists.txt); a source checkout used via "Additional module paths" has it one level up.
    """
    for root in (os.path.join(moduleDir, "ASFDAWorker"), os.path.dirname(os.path.abspath(moduleDir))):
        if os.path.isfile(os.path.join(root, "ASFDAExtension", "asfda", "__main__.py")):
            return root
    return None


def workerPythonPath(moduleDir):
    """Path entries that make the bundled ``asfda`` importable without installing it."""
    root = bundledWorkerRoot(moduleDir)
    return [os.path.join(root, "ASFDAExtension")] if root else []


def ensureTorch(askConfirmation=True):
    """Install torch with light-the-torch (the CUDA or CPU build that fits the driver) in a child process.

    What the PyTorch extension's ``installTorch`` runs, without its last step: it then imports torch into
    Slicer's own process (about a gigabyte of libraries, CUDA initialised), which only the worker process
    needs. The extension stays a dependency for its PyTorch Utils module, where a user picks another backend
    or removes a broken install. Returns False when the user declines; raises DependencyError on a failure.
    """
    import slicer

    if torchInstalled():
        return True
    args = ["install", "torch" + TORCH_REQUIREMENT]
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            "The ASFDA worker needs PyTorch. It will be downloaded and installed now with light-the-torch "
            f"(ltt {' '.join(args)}), the build that fits this computer's GPU driver; this can take several "
            "minutes.", windowTitle="ASFDA"):
        return False
    if installedVersion("light-the-torch") is None:
        slicer.util.pip_install(LIGHT_THE_TORCH)
    slicer.util.showStatusMessage("Installing PyTorch for the ASFDA worker...")
    slicer.util._executePythonModule("light_the_torch", args)  # a child Python: torch is not loaded here
    if not torchInstalled():
        raise DependencyError("PyTorch could not be installed: see the Python console for pip's output")
    return True


def installWithStatus(slicer, requirements, constraintsPath):
    """pip_install blocks the GUI for minutes on Slicer 5.8/5.10: say so while it runs."""
    message = ("Installing the ASFDA worker requirements; this can take several minutes and Slicer does not "
               "respond meanwhile:\n" + "\n".join(requirements))
    slicer.util.showStatusMessage(message.splitlines()[0])
    with slicer.util.MessageDialog(message), slicer.util.WaitCursor():
        slicer.util.pip_install(["-c", constraintsPath, *requirements])


def _install(slicer, requirements, constraintsPath, confirm):
    """One install step with the richest helper this Slicer offers; False when the user said No."""
    packaging = getattr(slicer, "packaging", None)
    if packaging is None:
        try:
            import slicer.packaging as packaging
        except ImportError:  # Slicer 5.8 and 5.10
            packaging = None
    if packaging is not None and hasattr(packaging, "pip_ensure"):  # Slicer 5.12
        try:
            packaging.pip_ensure(requirements, constraints=constraintsPath, prompt_install=confirm,
                                 requester="ASFDA", skip_in_testing=False)
        except RuntimeError as error:
            if "declined" in str(error):  # its "No" is a RuntimeError, not a failure to report
                return False
            raise
        return True
    if confirm and not slicer.util.confirmOkCancelDisplay(
            "The ASFDA worker needs these Python packages, which will be installed now (packages Slicer already "
            "has are kept at their versions):\n" + "\n".join(requirements), windowTitle="ASFDA"):
        return False
    installWithStatus(slicer, requirements, constraintsPath)
    return True


def ensureWorkerRequirements(requirements=None, workFolder=None):
    """pip-install missing worker requirements with Slicer's helpers (GUI thread only).

    Returns ``(installed, unavailable)``: what was installed, and the optional features left without their
    package (with the reason). Raises DependencyError when a required package cannot be had.
    """
    import slicer

    missing = missingRequirements(requirements)
    if not missing:
        return [], []
    conflicts = conflictsWithShipped(missing)
    required = [r for r in missing if parseRequirement(r).name not in OPTIONAL_REQUIREMENTS]
    optional = [r for r in missing if r not in required]
    blocking = [c for c in conflicts if c.split(" ")[0] not in OPTIONAL_REQUIREMENTS]
    if blocking:
        raise DependencyError(
            "Installing the worker requirements would upgrade packages this Slicer ships: " + "; ".join(blocking)
            + ". Run the worker in a separate Python environment (Worker > Python).")
    constraintsPath = writeConstraintsFile(workFolder or os.path.join(os.path.expanduser("~"), ".asfda"))
    unavailable = []
    if required:
        if not _install(slicer, required, constraintsPath, confirm=True):
            raise DependencyError("Installation of the worker requirements was cancelled")
    for req in optional:
        feature = OPTIONAL_REQUIREMENTS[parseRequirement(req).name]
        try:
            _install(slicer, [req], constraintsPath, confirm=False)
        except Exception as error:  # pip found no version that keeps Slicer's own packages: go without it
            logging.warning("ASFDA: %s not installed (%s): %s is unavailable", req, error, feature)
        if not satisfied(req):
            unavailable.append(f"{feature} ({req} could not be installed without upgrading Slicer's packages)")
    stillMissing = [r for r in required if not satisfied(r)]
    if stillMissing:
        raise DependencyError(f"Could not install: {', '.join(stillMissing)}")
    logging.info("ASFDA: installed %s", ", ".join(r for r in missing if satisfied(r)))
    return [r for r in missing if satisfied(r)], unavailable


def installBundledEngine(moduleDir):
    """pip-install the engine shipped with the extension, without touching its dependencies.

    Optional: the launcher already puts the bundled folder on PYTHONPATH. Installing makes the
    ``asfda`` command-line tool available in Slicer's Python too.
    """
    import slicer

    root = bundledWorkerRoot(moduleDir)
    if root is None or not os.path.isfile(os.path.join(root, "pyproject.toml")):
        raise DependencyError("The ASFDA engine is not bundled with this module; reinstall the extension")
    slicer.util.pip_install(["--no-deps", root])
    return root


def ensureLocalWorkerDependencies(moduleDir, askConfirmation=True):
    """Everything a worker in Slicer's own Python needs; returns False if the user declined."""
    if bundledWorkerRoot(moduleDir) is None:
        raise DependencyError("The ASFDA engine is not bundled with this module; reinstall the extension")
    if not ensureTorch(askConfirmation):
        return False
    _installed, unavailable = ensureWorkerRequirements()
    for feature in unavailable:
        logging.warning("ASFDA: the worker runs without %s", feature)
    return True
