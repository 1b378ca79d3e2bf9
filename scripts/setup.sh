#!/usr/bin/env bash
# Create .venv with the CPU build of torch and the asfda package (+ extras given as $1, e.g. "demo", "test" or
# "demo,nnunet"; nnunet and test also install nnU-Net v2 for `asfda model import --nnunet`).
# CUDA users: install your CUDA torch into the venv first (or set ASFDA_TORCH=skip); any torch>=2.2 works.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-demo}"
# The DICOMweb tests run a real Orthanc (Debian packages). Installed here when we may (root + apt);
# elsewhere those tests skip, and fail with the install command under CI=true.
if [ "$extras" = "test" ] && [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${ASFDA_TORCH:-cpu}" != "skip" ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
# nnU-Net models: nnunetv2 and its own packages without their declared dependencies (a new torch, torchvision);
# what they import is in the `nnunet` extra, which `test` includes.
case ",${extras}," in
    *,nnunet,* | *,test,*) .venv/bin/python -m pip install --quiet --no-deps -r scripts/nnunet-requirements.txt ;;
esac
