#!/usr/bin/env bash
# The whole GPU run in one call, for a lent CUDA machine with torch, triton and transformers but no network and
# none of TransformerLens, sae-lens, gradio, gguf or Ray:
#   1. installs the wheels `make gpu-wheels` put in gpu_wheels/ (--no-index --no-deps, into $OUT/site, only
#      packages the machine cannot import), and puts bench/gpu_shims on the path for datasets / pandas / wandb
#      where they are missing (import-time names only; see bench/gpu_shims);
#   2. the GPU test tier (tests/gpu: kernels, device maps);
#   3. every capability's CLI on a tiny model built in code, on CUDA and on the CPU, compared (bench/gpu_checks.py:
#      entropy fused and eager, a λ sweep, decoding with every strategy, steering, SAE training, a circuit run);
#   4. the fused attention + entropy kernel against SDPA at 1k–32k tokens, d64 and d128, causal
#      (bench/entropy_kernel.py);
# and writes bench/results/{capabilities,entropy_kernel,gpu_run}_gpu_<device>.json (under $OUT when set) plus
# logs. Usage, from the repository root: bash bench/gpu_run.sh [--dry-run]
# --dry-run (any machine, seconds): checks the wheel list and the shims, builds every command and parses it with
# the CLI's own parser, and writes the plan; runs no model. A unit test runs it.
set -uo pipefail
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
WORK=${OUT:-/tmp/headscope-gpu}
RESULTS=${OUT:+$OUT/}bench/results
[[ -n "${OUT:-}" ]] || RESULTS=$ROOT/bench/results
WHEELS=${HEADSCOPE_GPU_WHEELS:-$ROOT/gpu_wheels}
PY=${PYTHON:-python3}
mkdir -p "$WORK/logs" "$RESULTS"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONPATH="$ROOT:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
declare -A RC

wanted() { grep -v '^#' bench/gpu_wheels.txt | grep .; sed -n 's/^# binary: //p' bench/gpu_wheels.txt; }
module_of() { case "$1" in sae-lens) echo sae_lens;; transformer-lens) echo transformer_lens;; rpds-py) echo rpds;;
  docstring-parser) echo docstring_parser;; jsonschema-specifications) echo jsonschema_specifications;;
  *) echo "${1//-/_}";; esac; }

install_wheels() {
  local missing=()
  for spec in $(wanted); do
    local name=${spec%%==*}
    "$PY" -c "import $(module_of "$name")" 2>/dev/null || missing+=("$spec")
  done
  echo "missing here: ${missing[*]:-(none)}"
  if ((DRY)); then return 0; fi
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ -d "$WHEELS" ]] || { echo "no $WHEELS: run 'make gpu-wheels' where there is a network first"; return 1; }
  local failed=0
  for spec in "${missing[@]}"; do  # one at a time: a binary wheel for another Python must not stop the rest
    "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" --target "$WORK/site" "$spec" || failed=1
  done
  return $failed
}

shims() {  # stand-ins only for what is missing, so a machine that has the real package uses it
  local need=()
  rm -rf "$WORK/shims"
  for pkg in datasets pandas wandb; do "$PY" -c "import $pkg" 2>/dev/null || need+=("$pkg"); done
  if [[ ${#need[@]} -gt 0 ]]; then
    mkdir -p "$WORK/shims"
    cp bench/gpu_shims/stand_in.py "$WORK/shims/"
    for pkg in "${need[@]}"; do
      mkdir -p "$WORK/shims/$pkg"
      echo "from stand_in import fill; fill(__name__, globals())" >"$WORK/shims/$pkg/__init__.py"
    done
    export PYTHONPATH="$PYTHONPATH:$WORK/shims"
  fi
  echo "shims: ${need[*]:-(none)}"
}

step() {  # name, timeout, command...: logs to $WORK/logs/name.log, records the exit code
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
  RC[$name]=$?
  tail -n 3 "$WORK/logs/$name.log"
  echo "$name rc=${RC[$name]}"
}

install_wheels 2>&1 | tee "$WORK/logs/install.log"
RC[install]=${PIPESTATUS[0]}
shims | tee "$WORK/logs/shims.log"
[[ -d "$WORK/shims" ]] && export PYTHONPATH="$PYTHONPATH:$WORK/shims"
DEVICE=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).split()[-1].lower() if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo unknown)
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  >"$WORK/logs/versions.txt" 2>&1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$WORK/logs/versions.txt" 2>&1

if ((DRY)); then
  step checks 120 "$PY" bench/gpu_checks.py --dry-run --work "$WORK/checks" --out "$RESULTS/capabilities_gpu_plan.json"
  step kernel_help 60 "$PY" bench/entropy_kernel.py --help
else
  step tests 300 "$PY" -m pytest -q -p no:cacheprovider -rfE tests/gpu
  step checks 900 "$PY" bench/gpu_checks.py --device cuda --work "$WORK/checks" \
    --out "$RESULTS/capabilities_gpu_$DEVICE.json"
  step kernel 900 "$PY" bench/entropy_kernel.py --device cuda --out "$RESULTS/entropy_kernel_gpu_$DEVICE.json"
fi

SUMMARY="$RESULTS/gpu_run_${DEVICE}.json"
((DRY)) && SUMMARY="$RESULTS/gpu_run_plan.json"
{
  printf '{"dry_run": %s, "device": "%s", "versions": %s, "exit_codes": {' "$([[ $DRY == 1 ]] && echo true || echo false)" \
    "$DEVICE" "$("$PY" -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$WORK/logs/versions.txt")"
  sep=""
  for k in "${!RC[@]}"; do printf '%s"%s": %s' "$sep" "$k" "${RC[$k]}"; sep=", "; done
  printf '}}\n'
} >"$SUMMARY"
cat "$SUMMARY"
for k in "${!RC[@]}"; do [[ ${RC[$k]} -eq 0 ]] || exit 1; done
