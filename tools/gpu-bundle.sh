#!/usr/bin/env bash
# `cargo make gpu-bundle`: one folder that smoke-tests the suite on a CUDA machine with no Rust
# toolchain and no internet. It holds the stripped release `bench-suite`, the smoke script
# (tools/gpu-smoke.sh), the digits files the smoke runs need (MNIST train, compressed; the USPS
# test file) with their checksums, and a manifest (commit, torch version the binary was linked
# against). The binary loads libtorch at run time from the PyTorch installed there, which must be
# the version named in the manifest (the C++ ABI changes between releases).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out="${GH_BUNDLE_DIR:-$root/target/gpu-bundle}"
data_root="${GH_DATA_ROOT:-$root/data}"
venv="${GH_VENV:-$root/.venv}"

die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

mnist="$data_root/mnist"
usps="$data_root/usps"
for f in "$mnist/train-images-idx3-ubyte" "$mnist/train-labels-idx1-ubyte" "$usps/usps.t.bz2"; do
  [[ -f $f ]] || die "$f is missing: the bundle carries the digits files of its M->U runs. Fetch them first (target/release/data-fetch fetch digits, with --mirror DIR where the internet is out of reach), or point GH_DATA_ROOT at a data root that has them."
done

echo "gpu-bundle: building the release bench-suite"
cargo build --release --locked -p bench-suite
binary="$root/target/release/bench-suite"

torch_version=$("$venv/bin/python" -W ignore -c 'import torch; print(torch.__version__.split("+")[0])') \
  || die "cannot ask $venv for its torch version; run cargo make setup."

# Assemble in a sibling folder and swap it in at the end: a failed run leaves the old bundle whole.
staging="$out.partial"
rm -rf "$staging"
mkdir -p "$staging/bin" "$staging/data/mnist" "$staging/data/usps"
cp "$binary" "$staging/bin/bench-suite"
strip --strip-all "$staging/bin/bench-suite" || die "strip failed (binutils missing?)"
cp "$root/tools/gpu-smoke.sh" "$staging/gpu-smoke.sh"
# The protocol the binary embeds, for the smoke test's own small grid profile appended to it.
cp "$root/bench-suite/protocol.toml" "$staging/protocol.toml"
chmod +x "$staging/gpu-smoke.sh" "$staging/bin/bench-suite"

# The smoke script checks the decompressed files against these sums before training.
(cd "$mnist" && sha256sum train-images-idx3-ubyte train-labels-idx1-ubyte) > "$staging/data/mnist/SHA256SUMS"
(cd "$usps" && sha256sum usps.t.bz2) > "$staging/data/usps/SHA256SUMS"
gzip -9 -c "$mnist/train-images-idx3-ubyte" > "$staging/data/mnist/train-images-idx3-ubyte.gz"
gzip -9 -c "$mnist/train-labels-idx1-ubyte" > "$staging/data/mnist/train-labels-idx1-ubyte.gz"
cp "$usps/usps.t.bz2" "$staging/data/usps/usps.t.bz2"

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | head -1)
cat > "$staging/MANIFEST" <<EOF
# gpu-bundle manifest (read by gpu-smoke.sh)
commit=$commit${dirty:+ (with uncommitted changes)}
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
torch=$torch_version
bench_suite_sha256=$(sha256sum "$staging/bin/bench-suite" | cut -d' ' -f1)
EOF

rm -rf "$out"
mv "$staging" "$out"
size=$(du -sm "$out" | cut -f1)
echo "gpu-bundle: $out ($size MiB; binary $(du -m "$out/bin/bench-suite" | cut -f1) MiB; linked against torch $torch_version)"
(( size < 64 )) || die "the bundle is $size MiB, over the 64 MiB a device machine accepts"
echo "gpu-bundle: on the CUDA machine run  bash $(basename "$out")/gpu-smoke.sh"
