#!/usr/bin/env bash
# One short GPU check (docs/benchmarks.md): the realistic speed preset for both networks (fp32 and bf16
# interleaved), the CLI loop on 24 volumes of 256x256x224, and ranking against pool size. Figures land
# in $OUT (default /tmp/gpu-out); data sets are written to /tmp only. On a CUDA machine with torch but
# without the engine's other packages, put their wheels in .gpu-wheels/ (see ../shared notes: gpu.md).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if [ -d .gpu-wheels ]; then
    python -m pip install --quiet --no-index --no-deps .gpu-wheels/*.whl >"$OUT/pip.log" 2>&1
fi
export PYTHONPATH="$PWD/ASFDAExtension${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
python -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'monai', monai.__version__, torch.cuda.get_device_name(0))" >"$OUT/versions.txt" 2>&1
step() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "$name: exit $? in $((SECONDS - started)) s" | tee -a "$OUT/steps.txt"
}
step speed-unet 110 python -m asfda bench speed --preset realistic --network unet --device cuda --repeats 3 --compare-precision --out "$OUT/speed-unet"
step speed-swinunetr 170 python -m asfda bench speed --preset realistic --network swinunetr --device cuda --repeats 2 --compare-precision --no-child-memory --out "$OUT/speed-swinunetr"
step e2e 150 python -m asfda bench e2e --volumes 24 --device cuda --out /tmp/e2e
cp /tmp/e2e/e2e.json "$OUT/" 2>/dev/null
step pool 120 python -m asfda bench pool --sizes 4 32 128 --device cuda --loader-workers 4 --out /tmp/pool
cp /tmp/pool/pool.md /tmp/pool/pool.json "$OUT/" 2>/dev/null
exit 0
