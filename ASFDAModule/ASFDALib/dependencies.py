"""First-use installation of what a worker running in Slicer's own Python needs.

Nothing is installed at import or at module load: the user presses "Start local worker",
sees what is missing and confirms. torch goes through the PyTorch extension (it picks the CUDA
or CPU wheel that fits the driver); the rest through Slicer's pip helpers. The ranges below are
the engine's own (pyproject.toml); a test keeps them identical.
"""

import importlib.util
import logging
import os

TORCH_REQUIREMENT = ">=2.2"

# requirement -> import name, same specifiers as the engine's pyproject.toml
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
    "highdicom>=0.23": "highdicom",
    "filelock>=3.12": "filelock",
}


class DependencyError(RuntimeError):
    pass


def _installed(importName):
    try:
        return importlib.util.find_spec(importName) is not None
    except (ImportError, ValueError):
        return False


def missingRequirements(requirements=None):
    requirements = WORKER_REQUIREMENTS if requirements is None else requirements
    return [req for req, importName in requirements.items() if not _installed(importName)]


def torchInstalled():
    return _installed("torch")


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
    """Install torch through the PyTorch extension's logic; returns False when the user declines."""
    if torchInstalled():
        return True
    try:
        import PyTorchUtils
    except ImportError:
        raise DependencyError(
            "The PyTorch extension is required to install torch: install 'PyTorch' from the "
            "Extensions Manager and restart Slicer") from None
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=askConfirmation, torchVersionRequirement=TORCH_REQUIREMENT)
    return torch is not None


def installWithStatus(slicer, requirements):
    """pip_install blocks the GUI for minutes on Slicer 5.8/5.10: say so while it runs."""
    message = ("Installing the ASFDA worker requirements; this can take several minutes and Slicer does not "
               "respond meanwhile:\n" + "\n".join(requirements))
    slicer.util.showStatusMessage(message.splitlines()[0])
    with slicer.util.MessageDialog(message), slicer.util.WaitCursor():
        slicer.util.pip_install(list(requirements))


def ensureWorkerRequirements(requirements=None):
    """pip-install missing worker requirements with Slicer's helpers (GUI thread only)."""
    import slicer

    missing = missingRequirements(requirements)
    if not missing:
        return []
    # slicer.packaging changed across releases; use the richest helper this Slicer offers.
    try:
        import slicer.packaging as packaging
    except ImportError:
        packaging = None
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        packaging.pip_ensure(missing, prompt_install=True, requester="ASFDA")  # prompts, shows progress
    elif packaging is not None and hasattr(packaging, "pip_install"):
        try:
            packaging.pip_install(missing)  # dry-run against Slicer's constraints, then prompts
        except getattr(packaging, "InstallationAbortedError", ()) as aborted:
            raise DependencyError("Installation of the worker requirements was cancelled") from aborted
    else:  # Slicer 5.8 and 5.10
        if not slicer.util.confirmOkCancelDisplay(
                "The ASFDA worker needs these Python packages, which will be installed now:\n"
                + "\n".join(missing), windowTitle="ASFDA"):
            raise DependencyError("Installation of the worker requirements was cancelled")
        installWithStatus(slicer, missing)
    stillMissing = missingRequirements(requirements)
    if stillMissing:
        raise DependencyError(f"Could not install: {', '.join(stillMissing)}")
    logging.info("ASFDA: installed %s", ", ".join(missing))
    return missing


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
    ensureWorkerRequirements()
    return True
