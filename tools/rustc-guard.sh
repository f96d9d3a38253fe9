#!/usr/bin/env bash
# rustc wrapper (see .cargo/config.toml). Lets every compilation through, except torch-sys's when
# the build was not started by cargo-make: that one needs the project's libtorch venv on PATH.
# bash, not sh: dash drops environment variables whose names hold a hyphen
# (CARGO_BIN_EXE_bench-suite), which rustc must see.
if [ "$CARGO_PKG_NAME" = "torch-sys" ] && [ -z "$GH_SUITE_BUILD" ]; then
  cat >&2 <<'MSG'

  error: this workspace links libtorch from the project's own venv (.venv, torch==2.11.0),
         which plain `cargo build` does not set up.

  Run instead (from the repository root):
      cargo make build        # installs libtorch into .venv on first use, then builds
      cargo make test         # the test suite
      cargo make reproduce-all

  cargo-make missing?  cargo install --locked cargo-make

MSG
  exit 1
fi
exec "$@"
