"""Install what the lab needs: Debian packages, and a venv of the OpenStack 2026.1 services.

Nothing is written outside the lab root except the apt packages, the rados/rbd links into
the venv the lab tool runs in, and (by :mod:`seawall_lab.infrastructure`) the dummy keyring
``/etc/ceph/ceph.client.admin.keyring`` that os-brick insists on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from seawall_lab.layout import DEFAULT_ROOT, LabError
from seawall_lab.process import log, write

#: The OpenStack 2026.1 service releases; everything else comes from the constraints file.
PIP_PACKAGES = (
    "keystone==29.1.0",
    "glance==32.0.0",
    "openstack-placement==15.0.0",
    "nova==33.0.2",
    "neutron==28.0.2",
    "cinder==28.0.0",
    "PyMySQL",
    "python-openstackclient",
    "openstacksdk",
    "uwsgi",  # not in the constraints: built from the sdist (about 1.5 min)
)
APT_PACKAGES = (
    "mariadb-server",
    "rabbitmq-server",
    "ceph-mon",
    "ceph-mgr",
    "ceph-osd",
    "ceph-common",
    "radosgw",
    "openvswitch-switch",
    "openvswitch-common",
    "ovn-central",
    "ovn-host",
    "python3-rbd",
    "python3-rados",
    "qemu-utils",
    "curl",
    "uuid-runtime",
)
#: OpenStack's 2026.1 upper-constraints, package data of this tool: found beside this
#: module in a checkout, an editable install and a wheel alike
CONSTRAINTS = Path(__file__).resolve().with_name("upper-constraints.txt")


def install(root: Path = DEFAULT_ROOT, constraints: Path = CONSTRAINTS) -> dict[str, float]:
    """apt and pip, each only when something is missing; returns seconds per step."""
    timings: dict[str, float] = {}
    root.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    if subprocess.run(["dpkg", "-s", *APT_PACKAGES], capture_output=True).returncode:
        _apt_install(root)
        timings["apt"] = time.monotonic() - t
    venv = root / "venv"
    t = time.monotonic()
    if not (venv / "bin" / "nova-manage").exists():
        _pip_install(root, venv, constraints)
        timings["pip"] = time.monotonic() - t
    link_ceph_bindings(venv)
    link_ceph_bindings()  # and the venv seawall runs in, for the openstack driver's RBD path
    shim = root / "bin" / "sudo"
    write(
        shim,
        "#!/bin/sh\n"
        "# seawall lab: services run as root; drop sudo's flags and '*-rootwrap CONF'.\n"
        'while [ $# -gt 0 ]; do case "$1" in -E|-n|-H|-S) shift ;; --) shift; break ;;'
        " *) break ;; esac; done\n"
        'case "$1" in *-rootwrap) shift 2 ;; esac\n'
        'exec "$@"\n',
    )
    shim.chmod(0o755)
    return timings


def _apt_install(root: Path) -> None:
    log("*", "apt-get install (services are not auto-started: policy-rc.d)")
    prc = Path("/usr/sbin/policy-rc.d")
    made = not prc.exists()
    if made:
        prc.write_text("#!/bin/sh\nexit 101\n")
        prc.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with open(root / "apt.log", "ab") as out:
            for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q"]):
                pkgs = list(APT_PACKAGES) if "install" in argv else []
                subprocess.run([*argv, *pkgs], stdout=out, stderr=out, env=env, check=True)
    finally:
        if made:
            prc.unlink()


def _pip_install(root: Path, venv: Path, constraints: Path) -> None:
    if not constraints.is_file():
        raise LabError(f"lab: constraints file {constraints} is missing")
    log("*", f"pip install the OpenStack 2026.1 services into {venv} (about 4 min)")
    python = os.environ.get("SEAWALL_LAB_PYTHON", "python3")
    with open(root / "pip.log", "ab") as out:
        pip = str(venv / "bin/pip")
        for argv in (
            [python, "-m", "venv", str(venv)],
            [pip, "install", "-q", "-U", "pip", "setuptools", "wheel"],
            [pip, "install", "-c", str(constraints), *PIP_PACKAGES],
        ):
            subprocess.run(argv, stdout=out, stderr=out, check=True)


def link_ceph_bindings(venv: Path | None = None) -> Path | None:
    """Make Debian's rados/rbd extensions (built for CPython 3.11) importable in ``venv``
    (default: the venv this tool, and so seawall, runs in). Returns the site-packages
    linked, or None."""
    if venv is None:
        if sys.prefix == sys.base_prefix:
            return None
        purelib = Path(sysconfig.get_paths()["purelib"])
    else:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
        purelib = Path(out.stdout.strip())
    for mod in ("rados", "rbd"):
        src = Path(f"/usr/lib/python3/dist-packages/{mod}.cpython-311-x86_64-linux-gnu.so")
        dst = purelib / src.name
        if src.exists() and not dst.exists():
            dst.symlink_to(src)
    return purelib
