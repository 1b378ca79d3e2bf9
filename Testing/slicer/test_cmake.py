"""Configure, build and install the extension against a stand-in Slicer package.

No Slicer build exists here, so a minimal SlicerConfig.cmake supplies the variables and macros the
extension uses, with the same argument checks Slicer's do (files must exist). What this catches:
a script missing from SCRIPTS, a resource or engine file not landing next to the module.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SLICER_CONFIG = r"""
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.10/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR ${Slicer_QTSCRIPTEDMODULES_LIB_DIR})
set(BUILD_TESTING ON)
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(f ${MY_SCRIPTS} ${MY_RESOURCES})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${f})
      message(FATAL_ERROR "missing ${f}")
    endif()
    get_filename_component(_d ${f} DIRECTORY)
    install(FILES ${f} DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${_d})
    configure_file(${f} ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${f} COPYONLY)
  endforeach()
  file(WRITE ${CMAKE_BINARY_DIR}/scripts.txt "${MY_SCRIPTS}")
endmacro()
macro(slicer_add_python_unittest)
  cmake_parse_arguments(T "" "SCRIPT" "" ${ARGN})
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${T_SCRIPT})
    message(FATAL_ERROR "missing test script ${T_SCRIPT}")
  endif()
endmacro()
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_extension_configures_builds_and_installs(tmp_path):
    slicerDir = tmp_path / "Slicer"
    slicerDir.mkdir()
    (slicerDir / "SlicerConfig.cmake").write_text(SLICER_CONFIG)
    (slicerDir / "UseSlicer.cmake").write_text("")
    (slicerDir / "Empty.cmake").write_text("")
    build, prefix = tmp_path / "build", tmp_path / "install"

    def run(*args):
        result = subprocess.run(["cmake", *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr

    run("-S", str(REPO), "-B", str(build), f"-DSlicer_DIR={slicerDir}", f"-DCMAKE_INSTALL_PREFIX={prefix}")
    run("--build", str(build))
    run("--install", str(build))

    # Every Lib file ships: a file forgotten in SCRIPTS would only fail inside an installed Slicer.
    scripts = set((build / "scripts.txt").read_text().split(";"))
    libFiles = {f"ASFDALib/{p.name}" for p in (REPO / "ASFDAModule" / "ASFDALib").glob("*.py")}
    assert libFiles | {"ASFDA.py"} == scripts

    modules = prefix / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    for relative in ["ASFDA.py", "ASFDALib/client.py", "Resources/UI/ASFDA.ui", "Resources/Icons/ASFDA.png",
                     "ASFDAWorker/pyproject.toml", "ASFDAWorker/LICENSE",
                     "ASFDAWorker/ASFDAExtension/asfda/__main__.py"]:
        assert (modules / relative).is_file(), relative
    assert not list((modules / "ASFDAWorker").rglob("__pycache__"))
    built = build / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    assert (built / "Resources" / "UI" / "ASFDA.ui").is_file()
    assert (built / "ASFDAWorker" / "ASFDAExtension" / "asfda" / "__main__.py").is_file()


def test_index_urls_are_literal_https():
    """The Extensions Index reads these values as written; a ${VAR} in them fails its checks."""
    text = (REPO / "CMakeLists.txt").read_text()
    for name in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        match = re.search(rf'set\({name}\s+"([^"]*)"\)', text)
        assert match, name
        assert match.group(1).startswith("https://") and "${" not in match.group(1), (name, match.group(1))
    icon = re.search(r'set\(EXTENSION_ICONURL "[^"]*/raw/main/([^"]+)"\)', text).group(1)
    shot = re.search(r'set\(EXTENSION_SCREENSHOTURLS "[^"]*/raw/main/([^"]+)"\)', text).group(1)
    assert (REPO / icon).is_file() and (REPO / shot).is_file()


def test_module_resources_are_listed_for_the_macro():
    text = (REPO / "ASFDAModule" / "CMakeLists.txt").read_text()
    listed = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", text, re.S).group(1).split()
    files = {f"Resources/{p.relative_to(REPO / 'ASFDAModule' / 'Resources')}"
             for p in (REPO / "ASFDAModule" / "Resources").rglob("*") if p.is_file()}
    assert {entry.replace("${MODULE_NAME}", "ASFDA") for entry in listed} == files
