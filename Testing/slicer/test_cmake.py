"""Configure, build and install the extension against a stand-in Slicer package.

No Slicer build exists here, so a minimal SlicerConfig.cmake supplies the variables and macros the
extension uses, with the same argument checks Slicer's do (files must exist). What this catches:
a script missing from SCRIPTS, a resource or engine file not landing next to the module.
"""

import json
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


def extensionField(name):
    match = re.search(rf'set\({name}\s+"([^"]*)"\)', (REPO / "CMakeLists.txt").read_text())
    assert match, name
    return match.group(1)


RAW_URL = re.compile(r"https://raw\.githubusercontent\.com/([\w.-]+)/([\w.-]+)/([\w.-]+)/(\S+)$")


def test_index_urls_are_literal_and_name_files_of_this_repository():
    """The Extensions Index reads these values as written and fetches each: no ${VAR}, one repository for
    all (the catalogue entry's scm_url too), and the icon and screenshot are PNG files of this repository
    that git does not ignore, on the branch the entry builds."""
    entry = json.loads((REPO / "ASFDA.json").read_text())
    scm = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)\.git", entry["scm_url"])
    assert scm, entry["scm_url"]
    owner, repository = scm.groups()
    homepage = extensionField("EXTENSION_HOMEPAGE")
    assert homepage == f"https://github.com/{owner}/{repository}#readme"
    urls = [extensionField("EXTENSION_ICONURL"), *extensionField("EXTENSION_SCREENSHOTURLS").split()]
    for url in [homepage, *urls]:
        assert url.startswith("https://") and "${" not in url, url
    inGit = shutil.which("git") is not None and (REPO / ".git").exists()
    for url in urls:
        match = RAW_URL.match(url)
        assert match, f"not a raw file URL: {url}"
        assert match.group(1, 2) == (owner, repository), url
        assert match.group(3) == entry["scm_revision"], url
        path = REPO / match.group(4)
        assert path.is_file(), f"{url} names {path}, which is not in the repository"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        if inGit:  # an ignored file would never reach the published repository
            ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", match.group(4)])
            assert ignored.returncode == 1, f"{path} is ignored by git"


def test_contributors_are_name_and_affiliation():
    """The Extensions Index and Slicer's About box show contributors as "Name (Affiliation)"."""
    entries = [e.strip() for e in extensionField("EXTENSION_CONTRIBUTORS").split(",")]
    module = (REPO / "ASFDAModule" / "ASFDA.py").read_text()
    contributors = re.search(r"self\.parent\.contributors = \[([^\]]*)\]", module).group(1)
    entries += re.findall(r'"([^"]+)"', contributors)
    assert entries
    for entry in entries:
        assert re.fullmatch(r"[^()]+ \([^()]+\)", entry), entry


def test_module_resources_are_listed_for_the_macro():
    text = (REPO / "ASFDAModule" / "CMakeLists.txt").read_text()
    listed = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", text, re.S).group(1).split()
    files = {f"Resources/{p.relative_to(REPO / 'ASFDAModule' / 'Resources')}"
             for p in (REPO / "ASFDAModule" / "Resources").rglob("*") if p.is_file()}
    assert {entry.replace("${MODULE_NAME}", "ASFDA") for entry in listed} == files
