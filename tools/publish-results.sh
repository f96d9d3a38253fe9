#!/usr/bin/env bash
# Copies a profile's finished cells from a runs folder into results/<profile>/ (the records the
# README's headline is rendered from), then re-renders the committed report and the README's
# headline: report/tests/published.rs checks that they agree.
#
#   tools/publish-results.sh RUNS_FOLDER [PROFILE]     (default profile: digits-paper-cdan)
set -euo pipefail
runs=${1:?usage: tools/publish-results.sh RUNS_FOLDER [PROFILE]}
profile=${2:-digits-paper-cdan}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/results/$profile"
[[ -f $runs/profiles/$profile.json ]] || { echo "publish-results: $runs/profiles/$profile.json not found (run the profile there first)" >&2; exit 2; }
mkdir -p "$dest/profiles" "$dest/cells"
# The profile's manifest and those of the profiles reported with it (`reported_with`: arms run
# into the same folder, which its report includes).
manifests=("$runs/profiles/$profile.json")
for m in "$runs"/profiles/*.json; do
  if python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("reported_with") != sys.argv[2])' "$m" "$profile"; then
    manifests+=("$m")
  fi
done
cp "${manifests[@]}" "$dest/profiles/"
copied=0
for cell in "$runs"/cells/*/; do
  hash=$(basename "$cell")
  [[ -f $cell/done && -f $cell/run.jsonl ]] || continue
  grep -q "\"$hash\"" "${manifests[@]}" || continue
  mkdir -p "$dest/cells/$hash"
  cp "$cell"/{cell.json,done,run.jsonl} "$dest/cells/$hash/"
  [[ -f $cell/timing.json ]] && cp "$cell/timing.json" "$dest/cells/$hash/"
  copied=$((copied + 1))
done
echo "publish-results: $copied finished cell(s) of $profile${manifests[1]+ (with $(( ${#manifests[@]} - 1 )) profile(s) reported with it)} in $dest"
# The committed report, then the README's headline (between its markers) from it.
(cd "$root" && UPDATE_PUBLISHED=1 cargo test --locked -p report --test published -- --quiet >/dev/null 2>&1 || true)
python3 - "$root/README.md" "$dest/report/headline.md" "$profile" <<'PY'
import sys
readme, headline, profile = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
text = open(readme).read()
start, end = f"<!-- headline:{profile} -->\n", "<!-- /headline -->"
i = text.index(start) + len(start)
j = text.index(end, i)
open(readme, "w").write(text[:i] + headline + text[j:])
PY
(cd "$root" && cargo test --locked -p report --test published -- --quiet)
echo "publish-results: results/$profile/report and README.md's headline updated; commit them together"
