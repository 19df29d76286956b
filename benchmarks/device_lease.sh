#!/usr/bin/env bash
# Issue #16's checks for a lent device machine, in one call: the GPU set, the host CPU's AMX path, numerics there.
#
# A lease is short (minutes, all tries together), so everything it should measure is this one command, tried on a
# CPU beforehand. Prepare here, where the package registry is reachable:
#
#     make device-wheels        # the packages the device image lacks, for its Python 3.12, into the ignored .whl/
#
# then one call of the device tool:  run(command="bash benchmarks/device_lease.sh", carry=[".whl"], timeout_s=600)
#
# Everything printed also goes to $OUT/device.log (a time-out still returns what was measured); the figures go to
# $OUT/*.json. The stages, in this order, each under its own limit so that together they fit one 10-minute call:
#
#   gpu    benchmarks/gpu_check.py --device cuda: peak, network, predict_proba, predict_volume, tile,
#          training, normalisation, torch.compile (skipped without CUDA)                              <= 300 s
#   cpu    where the CPU has AMX-BF16 (the device machines' Intel Xeon host may): bench_inference.py on the CPU
#          under ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX and =AVX512_CORE_BF16 (the AMD-style path on the same
#          chip): the paper SegNet against the bf16 matmul peak of the same run, and the reduced SegNet's
#          predict_proba against its network                                                         <= 170 s
#   tests  the `numerics` tests on that CPU's own fastest path (AMX where present), napari and the
#          browser left out (neither travels under the 64 MiB limit)                                  <= 100 s
#
# `bash benchmarks/device_lease.sh cpu tests` runs only the stages named. DEVICE_QUICK=1 makes every stage small
# (with limits for a CPU shared with a test suite) and runs the cpu stage whatever the CPU has: how it is tried on a
# CPU without CUDA or AMX (tests/test_benchmarks.py).
set -u
cd "$(dirname "$0")/.."
out=${OUT:-${TMPDIR:-/tmp}/device_lease}
mkdir -p "$out"
exec > >(tee -a "$out/device.log") 2>&1
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
quick=${DEVICE_QUICK:-0}
stages=" ${*:-gpu cpu tests} "

if ! "$py" -c "import monai, nibabel, rasterio" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then  # beside it
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "device_lease: installing .whl/ failed"; exit 1; }
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PATH="/tmp/site/bin:$PATH"
fi

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket):' || true
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
for f in avx2 avx512f avx512_bf16 amx_bf16; do
    case "$flags" in *" $f "*) echo "cpu flag $f: yes" ;; *) echo "cpu flag $f: no" ;; esac
done
command -v nvidia-smi >/dev/null && nvidia-smi -L
torch_info=$("$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())")
echo "$torch_info"

if [[ $stages == *" gpu "* ]]; then
    if [[ $torch_info == *"available True" ]]; then
        echo "== gpu: benchmarks/gpu_check.py --device cuda"
        timeout 300 "$py" benchmarks/gpu_check.py --device cuda --json "$out/bench-gpu.json"
        echo "gpu stage exit $?"
    else
        echo "== gpu: no CUDA device here, skipped"
    fi
fi

cpu_bench() {  # cpu_bench ISA KIND LIMIT ARGS...: bench_inference.py on the CPU under that oneDNN cap
    local isa=$1 kind=$2 limit=$3
    shift 3
    echo "== cpu: ONEDNN_MAX_CPU_ISA=$isa, bench_inference.py $*"
    ONEDNN_MAX_CPU_ISA=$isa timeout "$limit" "$py" benchmarks/bench_inference.py --device cpu "$@" \
        --json "$out/cpu-$kind-$isa.json"
    echo "cpu stage ($kind) exit $?"
}

if [[ $stages == *" cpu "* ]]; then
    if [[ $flags == *" amx_bf16 "* || $quick == 1 ]]; then
        paper=(--repeats 5) reduced=(--features 8,16,32,64,64 --repeats 15) limits=(60 25)
        if [[ $quick == 1 ]]; then  # small, and limits for a CPU shared with a test suite
            paper=(--features 8,16,32,64,64 --repeats 2) reduced=(--features 8,16,32,64,64 --repeats 2) limits=(300 300)
        fi
        for isa in AVX512_CORE_AMX AVX512_CORE_BF16; do
            cpu_bench "$isa" paper "${limits[0]}" "${paper[@]}"
            cpu_bench "$isa" reduced "${limits[1]}" "${reduced[@]}"
        done
    else
        echo "== cpu: this CPU has no amx_bf16, skipped"
    fi
fi

if [[ $stages == *" tests "* ]]; then
    echo "== tests: numerics on this CPU's fastest path"
    where=(-n 8 tests --ignore=tests/napari_plugin --ignore=tests/web) limit=100
    [[ $quick == 1 ]] && where=(tests/test_tiling.py) limit=300
    timeout "$limit" "$py" -m pytest -m numerics -q -p no:cacheprovider "${where[@]}"
    echo "tests stage exit $?"
fi
echo "device_lease: done"
