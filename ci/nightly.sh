#!/usr/bin/env bash
# The nightly regression job (`cargo make nightly [--profile P] [ARGS...]`, after a release build):
#   1. bench-suite reproduce-all --profile P ARGS  (grid, bench-speed, report into reports/P/)
#   2. report check --profile P against ci/thresholds.toml, with JUnit and markdown into reports/P/
# Exit: 0 when the grid ran and every check passed; the check's 1 on a regression; the grid's
# status when it failed and the checks did not; 1 on P's first night (no group of P in the
# thresholds yet): the bounds proposed from this run go to reports/P/thresholds.proposed.toml, so
# that nobody mistakes an unchecked night for a passing one.
#
# Environment (defaults for the real job; the tests point them at stand-ins): GH_RUNS (runs),
# GH_NIGHTLY_SUITE (target/release/bench-suite), GH_NIGHTLY_REPORT (target/release/report),
# GH_NIGHTLY_THRESHOLDS (ci/thresholds.toml), GH_NIGHTLY_REPORTS (reports).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

suite=${GH_NIGHTLY_SUITE:-target/release/bench-suite}
report=${GH_NIGHTLY_REPORT:-target/release/report}
thresholds=${GH_NIGHTLY_THRESHOLDS:-ci/thresholds.toml}
reports=${GH_NIGHTLY_REPORTS:-reports}
runs=${GH_RUNS:-runs}

profile=nightly
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile)
      [ $# -ge 2 ] || { echo "nightly: --profile needs a profile name" >&2; exit 2; }
      profile="$2"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done

status=0
"$suite" reproduce-all --profile "$profile" ${rest[@]+"${rest[@]}"} || status=$?
if ! grep -q "^profile = \"$profile\"\$" "$thresholds"; then
  proposed="$reports/$profile/thresholds.proposed.toml"
  "$report" thresholds --from "$runs" --profile "$profile" --out "$proposed" || exit 1
  echo "nightly: $thresholds has no group of profile $profile yet: nothing was checked. Proposed bounds from this run: $proposed; review them and add them to $thresholds (CPU profiles: propose with --no-speed)."
  exit 1
fi
# The check runs also after a failed grid: it names what is missing.
check=0
"$report" check --runs "$runs" --thresholds "$thresholds" --profile "$profile" \
  --junit "$reports/$profile/junit.xml" --markdown "$reports/$profile/check.md" || check=$?
if [ "$check" -ne 0 ]; then
  exit "$check"
fi
exit "$status"
