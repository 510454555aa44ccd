#!/usr/bin/env bash
# The lab tier: bring both lab sites up, run every test marked `lab` against them, bring
# them down. `./dev test` (what CI runs) calls this after the fast tier; `./dev lab` alone.
# The sites are run by the lab tool, `seawall-lab` (lab/seawall_lab, installed beside seawall).
# On a fresh 2-core machine: about 6 min of apt + pip, 3-5 min cold start per site, then
# the tests. Needs root and Debian 12.
#   lab/openstack/ci.sh [PYTEST ARGS]
# Env: SEAWALL_LAB_ROOT (default /opt/seawall-lab), SEAWALL_LAB_KEEP=1 leaves the sites up.
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$(date +%s)
venv=$PWD/.venv
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
if ! "$venv/bin/python" -c "import seawall, seawall_lab, openstack, pytest" 2>/dev/null; then
  "$venv/bin/pip" install -q -e ".[test]" -e lab/
fi
export PATH="$venv/bin:$PATH"
root=${SEAWALL_LAB_ROOT:-/opt/seawall-lab}
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }
down() {
  if [ "${SEAWALL_LAB_KEEP:-0}" != 1 ]; then
    seawall-lab down --site b --root "$root" || true
    seawall-lab down --site a --root "$root" || true
  fi
  echo "ci.sh: total $(elapsed)" >&2
}
trap down EXIT
# a cold start on a busy 2-core machine can miss a deadline once, and a machine that ran
# the lab before may hold what a killed run left (pid and socket files): the second try
# stops the whole site first and starts it again from its data (what is set up stays)
up() {
  seawall-lab up --site "$1" --root "$root" "${@:2}" && return 0
  echo "ci.sh: lab site $1 did not come up; stopping it and trying once more (status and setup log below)" >&2
  seawall-lab status --site "$1" --root "$root" || true
  tail -n 20 "$root/sites/$1/log/setup.log" >&2 2>/dev/null || true
  seawall-lab down --site "$1" --root "$root" || true
  seawall-lab up --site "$1" --root "$root" "${@:2}"
}
up a
echo "ci.sh: site a up after $(elapsed)" >&2
up b --skip-install
echo "ci.sh: both sites up after $(elapsed)" >&2
seawall-lab status --root "$root"
# SEAWALL_LAB_ROOT, _CLOUD, _CLOUDS_YAML, _CEPH_CONF of site a, from the lab's own layout
eval "$(seawall-lab env --site a --root "$root")"
# -s: the end-to-end and fault tests print per-phase times for the issue note
set +e
pytest -m lab -p no:cacheprovider -s "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "ci.sh: no lab tests were collected; that is a failure" >&2; exit 1; fi
echo "ci.sh: lab tests done after $(elapsed) (exit $rc)" >&2
exit $rc
