#!/usr/bin/env bash
# GPU smoke test of a gpu-bundle (`cargo make gpu-bundle` writes it with this script inside).
# Runs on a CUDA machine with no Rust toolchain and no internet, using the PyTorch installed there
# (its torch/lib goes on the library path). About 2-4 minutes on one recent GPU; at most 8.
#
#   bash gpu-smoke.sh            # the whole smoke test on cuda
#
# Steps: bench-step on cuda (LeNet: plain / three-pass / two-pass), CDAN and MCD with GH++ on
# M->U for 500 harmonized iterations each (CDAN after its 937-iteration source-only epoch; each
# run must have formed and measured its pair), one real training iteration of CDAN and MCD (none, GH++) on
# ResNet-50 at 224, each checked to have completed; timings and GPU memory (nvidia-smi) at the end.
# Exit 0: every step passed, or no CUDA device (said so). Exit 1: a step failed or the setup is
# wrong (the message says what to do).
#
# Environment: PYTHON (default python3), GH_SMOKE_WORK (scratch folder; default a temporary one,
# removed at the end unless GH_SMOKE_KEEP=1), GH_SMOKE_ITERS (default 500), GH_SMOKE_DEVICE
# (default cuda; cpu runs the same steps on the CPU with ResNet batch 2, to check a bundle where
# no GPU is at hand).
set -uo pipefail

bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
iters=${GH_SMOKE_ITERS:-500}
device=${GH_SMOKE_DEVICE:-cuda}
started=$(date +%s)

say() { printf 'gpu-smoke: %s\n' "$*"; }
die() { printf '\ngpu-smoke: error: %s\n' "$*" >&2; exit 1; }

manifest_value() { sed -n "s/^$1=//p" "$bundle/MANIFEST" 2>/dev/null | head -1; }
[[ -x $bundle/bin/bench-suite && -f $bundle/MANIFEST ]] \
  || die "$bundle is not a whole gpu-bundle (bin/bench-suite or MANIFEST missing). Rebuild it: cargo make gpu-bundle."
expected_torch=$(manifest_value torch)
say "bundle $(manifest_value commit), built $(manifest_value built), linked against torch $expected_torch"

# --- PyTorch: present, the bundle's version, and (for cuda) a device ---------------------------
command -v "$python" >/dev/null 2>&1 \
  || die "'$python' not found. The bundle loads libtorch from an installed PyTorch $expected_torch: install it (pip install torch==$expected_torch) or set PYTHON=/path/to/python."
probe=$("$python" -W ignore -c '
import os, torch
print(torch.__version__.split("+")[0])
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
print(int(torch.cuda.is_available()))
print(torch.version.cuda or "none")
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
' 2>&1) || die "'$python -c \"import torch\"' failed:
$probe
Install PyTorch $expected_torch for this Python (pip install torch==$expected_torch) or set PYTHON to a Python that has it."
{ read -r torch_version; read -r torch_lib; read -r cuda_available; read -r cuda_version; read -r gpu_name; } <<< "$probe"
say "PyTorch $torch_version (CUDA $cuda_version) at ${torch_lib%/lib}"
[[ $torch_version == "$expected_torch" ]] \
  || die "this machine's PyTorch is $torch_version, the bundle was linked against $expected_torch (libtorch's C++ ABI differs between releases). Either install torch==$expected_torch here (pip install torch==$expected_torch, or a venv with it and PYTHON=that venv's python), or rebuild the bundle on a development machine whose .venv holds $torch_version (tools/setup-libtorch.sh's version and the tch pin in Cargo.toml must match: see README, 'GPU smoke bundle')."
[[ -e $torch_lib/libtorch_cpu.so ]] || die "no libtorch_cpu.so under $torch_lib: this PyTorch install is incomplete; reinstall torch==$expected_torch."

if [[ $device == cuda* ]]; then
  if [[ $cuda_available != 1 ]]; then
    say "no CUDA device visible to PyTorch (torch.cuda.is_available() is False): nothing to smoke-test here. (GH_SMOKE_DEVICE=cpu runs the same steps on the CPU.)"
    exit 0
  fi
  [[ -e $torch_lib/libtorch_cuda.so ]] \
    || die "PyTorch sees a GPU but $torch_lib has no libtorch_cuda.so; reinstall a CUDA build of torch==$expected_torch."
  say "device $device: $gpu_name"
fi
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
suite="$bundle/bin/bench-suite"
"$suite" --version >/dev/null 2>&1 || die "bin/bench-suite does not start with $torch_lib on the library path:
$("$suite" --version 2>&1 | tail -5)"

# --- Scratch folder and the digits files ----------------------------------------------------------
if [[ -n ${GH_SMOKE_WORK:-} ]]; then
  work=$GH_SMOKE_WORK; mkdir -p "$work" || die "cannot create GH_SMOKE_WORK=$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/gh-smoke.XXXXXX") || die "mktemp failed; set GH_SMOKE_WORK to a writable folder"
  [[ ${GH_SMOKE_KEEP:-0} == 1 ]] || trap 'rm -rf "$work"' EXIT
fi
say "scratch folder $work"
data="$work/data"
mkdir -p "$data/mnist" "$data/usps"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte; do
  [[ -f $data/mnist/$f ]] && continue
  { gzip -dc "$bundle/data/mnist/$f.gz" > "$data/mnist/$f.partial" && mv "$data/mnist/$f.partial" "$data/mnist/$f"; } \
    || die "cannot unpack $bundle/data/mnist/$f.gz into $data/mnist"
done
cp "$bundle/data/usps/usps.t.bz2" "$data/usps/"
(cd "$data/mnist" && sha256sum --quiet -c "$bundle/data/mnist/SHA256SUMS") \
  && (cd "$data/usps" && sha256sum --quiet -c "$bundle/data/usps/SHA256SUMS") \
  || die "the digits files do not match their checksums: the bundle is damaged; copy it again."

# --- GPU memory sampler ----------------------------------------------------------------------------
memlog="$work/gpu-memory.csv"
sampler=
if [[ $device == cuda* ]] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader,nounits -lms 500 > "$memlog" 2>/dev/null &
  sampler=$!
fi

# --- The steps -------------------------------------------------------------------------------------
names=(); results=(); seconds=()
failed=0
step() { # step NAME TIMEOUT_S CHECK COMMAND...   (CHECK: a function given the step's log, or -)
  local name=$1 limit=$2 check=$3; shift 3
  local log="$work/$(echo "$name" | tr -c 'A-Za-z0-9+\n-' '_').log" t0 t1 rc verdict reason=
  say "[$name] $*"
  t0=$(date +%s.%N)
  timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  sed 's/^/    /' "$log" | tail -n 25
  if (( rc == 124 || rc == 137 )); then verdict="FAIL (over ${limit} s)"
  elif (( rc != 0 )); then verdict="FAIL (exit $rc)"
  elif [[ $check != - ]] && ! reason=$("$check" "$log"); then verdict="FAIL ($reason)"
  else verdict=ok
  fi
  [[ -n $reason ]] && say "[$name] $reason"
  [[ $verdict == ok ]] || failed=1
  names+=("$name"); results+=("$verdict"); seconds+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')")
}

# The run record's last line is the summary: completed, with a finite accuracy, and it trained what
# was asked: every harmonized pair formed in some step (an adapted, harmonized run, not a
# source-only one labelled GH++).
run_completed() {
  local record=$1
  "$python" - "$record" <<'PY'
import json, math, sys
try:
    lines = [l for l in open(sys.argv[1]) if l.strip()]
    last = json.loads(lines[-1])
except Exception as e:
    print(f"no readable run record at {sys.argv[1]}: {e}"); sys.exit(1)
if last.get("event") != "summary":
    print("the run record has no summary line"); sys.exit(1)
if last.get("status") != "completed":
    print(f"status {last.get('status')}: {last.get('reason', '')}"); sys.exit(1)
acc = last.get("final_accuracy")
if acc is None or not math.isfinite(acc):
    print("no final accuracy"); sys.exit(1)
if last.get("trained") != "as-asked":
    print(f"trained: {last.get('trained')} (the transfer loss or the harmonized pair never trained)"); sys.exit(1)
pairs = last.get("harmonization") or {}
if not pairs or any(p.get("formed_steps", 0) == 0 or p.get("measured_steps", 0) == 0 for p in pairs.values()):
    print(f"no harmonized step in a GH++ run: {pairs}"); sys.exit(1)
steps = ", ".join(f"{k} formed in {p['formed_steps']}, reweighted in {p.get('reweighted_steps', 0)}" for k, p in pairs.items())
print(f"completed {last['iterations']} iterations, target accuracy {100 * acc:.2f} %, "
      f"{last['seconds_per_100_steps']:.3f} s / 100 iterations; {steps}")
PY
}
check_cdan() { run_completed "$work/runs/cdan/run.jsonl"; }
check_mcd() { run_completed "$work/runs/mcd/run.jsonl"; }

resnet_batch=32
[[ $device == cuda* ]] || resnet_batch=2

step "bench-step LeNet" 120 - \
  "$suite" bench-step --device "$device" --backbone lenet --harmonizer gh++
# CDAN's digits protocol trains its first epoch (937 iterations on M->U) on the source alone:
# its run goes that far plus GH_SMOKE_ITERS adapted, harmonized iterations.
cdan_warmup=937
for method in cdan mcd; do
  length=$iters label="$iters it"
  if [[ $method == cdan ]]; then length=$(( cdan_warmup + iters )) label="$cdan_warmup+$iters it"; fi
  step "$method GH++ M-U $label" 180 "check_$method" \
    "$suite" run-one --method "$method" --harmonizer gh++ --task M-U --split usps=test \
      --iters "$length" --seed 1 --device "$device" --data-root "$data" --out "$work/runs/$method" --quiet
done
step "ResNet-50 iteration (CDAN, MCD x none, GH++)" 180 - \
  "$suite" bench-iteration --device "$device" --dataset office31 --baselines cdan,mcd \
    --harmonizers none,gh++ --batch "$resnet_batch" --warmup 1 --iterations 1

# --- Summary ---------------------------------------------------------------------------------------
if [[ -n $sampler ]]; then kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null; fi
echo
say "summary ($device, PyTorch $torch_version, $(( $(date +%s) - started )) s in all)"
printf '  %-48s %10s  %s\n' step seconds verdict
for i in "${!names[@]}"; do
  printf '  %-48s %10s  %s\n' "${names[$i]}" "${seconds[$i]}" "${results[$i]}"
done
if [[ -s $memlog ]]; then
  awk -F', *' '{ if ($2 > peak[$1]) peak[$1] = $2; total[$1] = $3 }
    END { for (g in peak) printf "  GPU %s memory: peak %d MiB used of %d MiB (nvidia-smi, sampled every 0.5 s)\n", g, peak[g], total[g] }' "$memlog"
  nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv 2>/dev/null | sed 's/^/  /'
elif [[ $device == cuda* ]]; then
  say "nvidia-smi not found: no memory figures"
fi
if (( failed )); then
  say "FAILED (logs above; kept in $work when GH_SMOKE_KEEP=1 or GH_SMOKE_WORK is set)"
  exit 1
fi
say "all steps passed"
