#!/usr/bin/env bash
# GPU smoke test of a gpu-bundle (`cargo make gpu-bundle` writes it with this script inside).
# Runs on a CUDA machine with no Rust toolchain and no internet, using the PyTorch installed there
# (its torch/lib goes on the library path). About 2-4 minutes on one recent GPU; at most 8.
#
#   bash gpu-smoke.sh            # the whole smoke test on cuda
#
# Steps: bench-step on cuda (LeNet: plain / three-pass / two-pass with the weights on the host and
# on the device); CDAN and MCD with GH++ on M->U for 500 harmonized iterations each (CDAN after its
# 937-iteration source-only epoch; each run must have formed, measured and re-weighted its pair);
# one image-pipeline run of each CNN protocol (CDAN, GVB, MCD, DWL on ResNet-50 at 256/224) and of
# SSRT (ViT-B/16 at 224), on generated JPEG folders with randomly initialised backbones (the bundle
# carries no ImageNet weights); a small grid with `--gpus all --workers 2`; one cell run twice
# with --deterministic, whose records must agree; CDAN (past its warm-up) and SSRT under
# --precision bf16, whose records must say bf16; no libtorch warning in any log; timings and GPU
# memory (nvidia-smi) at the end.
# Exit 0: every step passed, or no GPU on this machine (said so). Exit 1: a step failed, the
# setup is wrong, or a GPU is present but PyTorch cannot use it (the message says what to do).
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
    # A GPU the driver lists but PyTorch cannot use is a broken setup, not a CPU machine.
    gpus_listed=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    if (( ${gpus_listed:-0} > 0 )) || compgen -G '/dev/nvidia[0-9]*' >/dev/null; then
      die "this machine has a GPU ($(nvidia-smi -L 2>/dev/null | head -1 || echo /dev/nvidia*)) but PyTorch $torch_version cannot use it (torch.cuda.is_available() is False; CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}). Check the driver against PyTorch's CUDA $cuda_version (nvidia-smi's 'CUDA Version' must be at least it) and CUDA_VISIBLE_DEVICES."
    fi
    say "no GPU on this machine (nvidia-smi lists none, no /dev/nvidia*): nothing to smoke-test here. (GH_SMOKE_DEVICE=cpu runs the same steps on the CPU.)"
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
  local record=$1 require=${2:-formed}
  "$python" - "$record" "$require" <<'PY'
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
if sys.argv[2] == "reweighted" and not any(p.get("reweighted_steps", 0) > 0 for p in pairs.values()):
    print(f"GH++ never changed a weight (no conflicting step re-weighted): {pairs}"); sys.exit(1)
steps = ", ".join(f"{k} formed in {p['formed_steps']}, reweighted in {p.get('reweighted_steps', 0)}" for k, p in pairs.items())
print(f"completed {last['iterations']} iterations, target accuracy {100 * acc:.2f} %, "
      f"{last['seconds_per_100_steps']:.3f} s / 100 iterations; {steps}")
PY
}
# Every log: no libtorch warning (e.g. 2.11's pin_memory deprecation, two lines per call).
no_warnings() {
  local hit
  hit=$(grep -m1 -iE 'deprecat|^\[W[0-9]' "$1") && { echo "libtorch warned: $hit"; return 1; }
  return 0
}
check_cdan() { no_warnings "$1" && run_completed "$work/runs/cdan/run.jsonl" reweighted; }
# The run record's config line names the precision the run was asked for.
ran_bf16() {
  "$python" - "$1" <<'PY'
import json, sys
first = json.loads(open(sys.argv[1]).readline() or "{}")
precision = ((first.get("context") or {}).get("numerics") or {}).get("precision")
if precision != "bf16":
    print(f"{sys.argv[1]}: the record says precision {precision or 'none'}, not bf16"); sys.exit(1)
PY
}
check_bf16() {
  no_warnings "$1" && ran_bf16 "$work/runs/bf16-cdan/run.jsonl" && ran_bf16 "$work/runs/images-bf16-ssrt/run.jsonl" || return 1
  local cdan ssrt
  cdan=$(run_completed "$work/runs/bf16-cdan/run.jsonl" reweighted) || { echo "cdan: $cdan"; return 1; }
  ssrt=$(run_completed "$work/runs/images-bf16-ssrt/run.jsonl") || { echo "ssrt: $ssrt"; return 1; }
  echo "bf16 cdan: $cdan; bf16 ssrt: $ssrt"
}
check_mcd() { no_warnings "$1" && run_completed "$work/runs/mcd/run.jsonl" reweighted; }
check_images() { no_warnings "$1" && for m in cdan gvb mcd dwl ssrt; do run_completed "$work/runs/images-$m/run.jsonl" >/dev/null || { echo "$m: $(run_completed "$work/runs/images-$m/run.jsonl")"; return 1; }; done && echo "cdan, gvb, mcd, dwl, ssrt: completed with their pair formed"; }
# The grid: two cells published by two workers, none failed.
check_grid() {
  no_warnings "$1" || return 1
  grep -q 'run: 2 cell(s) published (0 diverged), 0 failed' "$1" || { echo "not both cells published: $(grep '^run: ' "$1" | tail -1)"; return 1; }
  grep -q '2 worker(s)' "$1" || { echo "not two workers"; return 1; }
  echo "2 cells published by 2 workers"
}
# The same cell twice with --deterministic: identical records but for timings and start times.
check_rerun() {
  no_warnings "$1" || return 1
  "$python" - "$work/runs/rerun-1/run.jsonl" "$work/runs/rerun-2/run.jsonl" <<'PY'
import json, sys
def load(p):
    out = []
    for l in open(p):
        d = json.loads(l)
        d.pop("context", None)
        for k in list(d):
            if "second" in k or k in ("wall", "elapsed"):
                d.pop(k)
        out.append(d)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
if len(a) != len(b) or diff:
    i = diff[0] if diff else min(len(a), len(b))
    print(f"the two deterministic runs differ (line {i + 1} of {len(a)}/{len(b)}): {a[i] if i < len(a) else None} vs {b[i] if i < len(b) else None}"[:600]); sys.exit(1)
print(f"identical records ({len(a)} lines, final accuracy {a[-1].get('final_accuracy')})")
PY
}

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

# The image pipeline (decode, resize, crop, pinned upload) on generated JPEG folders, two classes.
images_ok=1
"$python" - "$work/images" <<'PY' || images_ok=0
import os, random, sys
from PIL import Image
root = sys.argv[1]
rng = random.Random(1)
for domain, shift in (("photos", 0), ("sketches", 60)):
    for k in range(2):
        d = os.path.join(root, domain, f"class{k}")
        os.makedirs(d, exist_ok=True)
        for i in range(40):
            colour = (120 * k + shift + rng.randrange(40), 200 - 80 * k, rng.randrange(255))
            Image.new("RGB", (300 + rng.randrange(60), 260 + rng.randrange(60)), colour).save(os.path.join(d, f"{i}.jpg"), quality=90)
PY
(( images_ok )) || die "could not write the test JPEGs with $python's Pillow into $work/images"
images_task="folder:$work/images/photos->$work/images/sketches"
image_batch=32; [[ $device == cuda* ]] || image_batch=2
images_run() { # images_run METHOD SETTINGS...   (record in $work/runs/images${IMAGES_TAG}-METHOD)
  local m=$1; shift
  "$suite" run-one --method "$m" --harmonizer gh++ --task "$images_task" --iters 2 --eval-every 2 \
    --iters-per-epoch 1 --telemetry-every 1 --set "batch=$image_batch" "$@" --seed 1 --device "$device" \
    --data-root "$work" --out "$work/runs/images${IMAGES_TAG:-}-$m" --quiet
}
images_all() {
  for m in cdan gvb mcd dwl; do
    images_run "$m" --protocol-of office31 --set 'backbone={network="resnet50",pretrained=false}' || return 1
  done
  images_run ssrt --protocol-of office31 --set 'vit={ weights = "in21k-ft-in1k", pretrained = false }' || return 1
}
# `step` runs its command under timeout, i.e. in a new process: functions and their variables are exported.
export suite work device data images_task image_batch
export -f images_run images_all
step "image pipeline: CDAN, GVB, MCD, DWL (ResNet-50), SSRT (ViT-B/16)" 300 check_images bash -c images_all

# A grid of two CDAN cells (none, GH++; 20 source-only + 20 adapted iterations) on two workers.
cp "$bundle/protocol.toml" "$work/protocol.toml" || die "$bundle/protocol.toml is missing: rebuild the bundle (cargo make gpu-bundle)"
cat >> "$work/protocol.toml" <<'TOML'

[profiles.smoke]
description = "gpu-smoke.sh: two short CDAN cells"
datasets = ["digits"]
tasks = ["M-U"]
baselines = ["cdan"]
harmonizers = ["none", "gh++"]
seeds = [1]
stand_ins = { usps = "test" }

[profiles.smoke.schedule.cdan]
iterations = 40
iters_per_epoch = 20
eval_every = 40
TOML
if [[ $device == cuda* ]]; then grid_devices=(--gpus all --workers 2); else grid_devices=(--device cpu --workers 2); fi
step "grid on ${grid_devices[*]}" 300 check_grid \
  "$suite" --protocol "$work/protocol.toml" run --profile smoke --runs "$work/grid" --data-root "$data" --quiet "${grid_devices[@]}"

# One cell twice, deterministic: the records must agree.
rerun() {
  for k in 1 2; do
    "$suite" run-one --method cdan --harmonizer gh++ --task M-U --split usps=test --iters 1037 --eval-every 1037 \
      --deterministic --seed 3 --device "$device" --data-root "$data" --out "$work/runs/rerun-$k" --quiet || return 1
  done
}
export -f rerun
step "CDAN GH++ twice with --deterministic" 300 check_rerun bash -c rerun

# bfloat16 autocast: CDAN past its warm-up (the BCE autocast refuses runs in float32) and SSRT's
# ViT (fused attention under autocast); both records must say bf16.
bf16_runs() {
  "$suite" run-one --method cdan --harmonizer gh++ --task M-U --split usps=test --iters "$(( cdan_warmup + iters ))" \
    --precision bf16 --seed 1 --device "$device" --data-root "$data" --out "$work/runs/bf16-cdan" --quiet || return 1
  IMAGES_TAG=-bf16 images_run ssrt --protocol-of office31 --set 'vit={ weights = "in21k-ft-in1k", pretrained = false }' --precision bf16
}
export cdan_warmup iters
export -f bf16_runs
step "CDAN GH++ and SSRT with --precision bf16" 300 check_bf16 bash -c bf16_runs

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
