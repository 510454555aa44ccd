#!/usr/bin/env bash
# Bring both lab sites up, run every test marked `lab` against them, bring them down.
# For CI to call once the integrator decides to (a fresh 2-core machine: about 4 min of
# apt + pip, 3-4 min cold start per site, then the tests). Needs root and Debian 12.
#   lab/openstack/ci.sh [PYTEST ARGS]
# Env: SEAWALL_LAB_ROOT (default /opt/seawall-lab), SEAWALL_LAB_KEEP=1 leaves the sites up.
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$(date +%s)
venv=$PWD/.venv
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
if ! "$venv/bin/python" -c "import seawall, openstack, pytest" 2>/dev/null; then
  "$venv/bin/pip" install -q -e ".[test]"
fi
export PATH="$venv/bin:$PATH"
root=${SEAWALL_LAB_ROOT:-/opt/seawall-lab}
down() {
  if [ "${SEAWALL_LAB_KEEP:-0}" != 1 ]; then seawall lab down --root "$root" || true; fi
  echo "ci.sh: total $(( $(date +%s) - t0 ))s" >&2
}
trap down EXIT
seawall lab up --site a --root "$root"
seawall lab up --site b --root "$root" --skip-install
echo "ci.sh: both sites up after $(( $(date +%s) - t0 ))s" >&2
seawall lab status --root "$root"
export SEAWALL_LAB_ROOT=$root SEAWALL_LAB_CLOUD=seawall-lab-a \
  SEAWALL_LAB_CLOUDS_YAML=$root/sites/a/clouds.yaml \
  SEAWALL_LAB_CEPH_CONF=$root/sites/a/etc/ceph/ceph.conf
pytest -m lab -p no:cacheprovider -s tests/clouds tests/lab "$@"  # -s: the e2e test prints per-phase times
