#!/usr/bin/env bash
# Every GPU check of the simulator on CUDA and the peer benchmark, in one run on a GPU
# machine (no package registry there: the peers travel as an unpacked site folder).
# Each step under its own time limit, continuing on failure; logs and JSON to $OUT.
#
#   OUT=/tmp/out SITE=../.whl/site bash benchmarks/gpu_checks.sh [steps...]
#
# steps: env tests simspeed peers sparse (default: all, in this order).
set -u
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
export PYTHONPATH=".:${SITE:-}:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
STEPS=${*:-env tests simspeed peers sparse}
PY=${PY:-python3}
LIBS=(neurodeploy snntorch norse spikingjelly "lava-dl slayer")
T_TESTS=${T_TESTS:-110} T_SIM=${T_SIM:-150} T_PEERS=${T_PEERS:-200} T_SPARSE=${T_SPARSE:-90}
step() {  # name, seconds, command...
    local name=$1 secs=$2; shift 2
    local t0=$(date +%s)
    timeout --kill-after=5 "$secs" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $(( $(date +%s) - t0 ))s" | tee -a "$OUT/steps.txt"
}
for s in $STEPS; do
    case $s in
    env) step env 30 bash -c 'nvidia-smi; python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))"' ;;
    tests) step tests "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider tests/test_sim_cuda.py ;;
    simspeed) step simspeed "$T_SIM" "$PY" benchmarks/sim_speed.py --device cuda --batch 4096 --steps 1000 \
        --check-batch 256 --out "$OUT/sim_speed_cuda_h200.json" --note "one H200; best of 3" ;;
    peers) step peers "$T_PEERS" "$PY" benchmarks/peers.py --device cuda --sj-python "$(command -v "$PY")" --timeout 100 \
        --bisect 8 --libraries "${LIBS[@]}" \
        --json "$OUT/peers_cuda_h200.json" ;;
    sparse) step sparse "$T_SPARSE" "$PY" benchmarks/sparse_backward.py --device cuda --json "$OUT/sparse_backward_cuda_h200.json" ;;
    esac
done
cat "$OUT/steps.txt"
