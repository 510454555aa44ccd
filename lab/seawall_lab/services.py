"""The OpenStack 2026.1 services of a lab site: Keystone, Glance, Placement, Nova (fake
virt driver: servers run no guest), Neutron ML2/OVN, Cinder on Ceph RBD with cinder-backup.

Each API runs under uwsgi (one master, one worker, four threads); the other services are
their own processes. Configuration files are written on every ``up`` (only when changed);
database migrations and Keystone's bootstrap run once (:func:`seawall_lab.process.once`).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Sequence
from typing import Any

from seawall_lab.layout import HOST, PASSWORD, REGION, LabSite
from seawall_lab.process import http_ok, once, output, sh, start, wait_for, write


def _ini(sections: dict[str, dict[str, Any]]) -> str:
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        out.extend(f"{k} = {v}" for k, v in values.items())
        out.append("")
    return "\n".join(out)


def _password_auth(site: LabSite, user: str) -> dict[str, Any]:
    return {
        "auth_url": site.url("keystone"),
        "auth_type": "password",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": "service",
        "username": user,
        "password": PASSWORD,
        "region_name": REGION,
    }


def _authtoken(site: LabSite, user: str) -> dict[str, Any]:
    return {
        "www_authenticate_uri": site.url("keystone"),
        **_password_auth(site, user),
        "service_token_roles_required": "true",
    }


def _service_user(site: LabSite, user: str) -> dict[str, Any]:
    # 2026.1 policies want a service token for external events and attachment deletes
    auth = _password_auth(site, user)
    auth.pop("region_name")
    return {"send_service_user_token": "true", **auth}


def start_uwsgi(site: LabSite, name: str, port: int, module: str, env: dict[str, str],
                pyargv: str = "", extra: Sequence[str] = ()) -> None:  # fmt: skip
    """An API under uwsgi: one master, one worker, four threads."""
    argv = [
        str(site.venv / "bin" / "uwsgi"), "--master", "--processes", "1", "--threads", "4",
        "--enable-threads", "--die-on-term", "--lazy-apps", "--need-app",
        "--virtualenv", str(site.venv), "--http-socket", f"{HOST}:{port}", "--module", module,
        "--buffer-size", "65535", "--add-header", "Connection: close",
        "--procname-prefix", f"seawall-lab-{site.name}-",
    ]  # fmt: skip
    if pyargv:
        argv += ["--pyargv", pyargv]
    start(site, name, [*argv, *extra], {**site.env(), **env})


def write_clouds_yaml(site: LabSite) -> None:
    auth = {
        "auth_url": site.url("keystone", "/v3"),
        "username": "admin",
        "password": PASSWORD,
        "user_domain_name": "Default",
    }
    clouds = {
        "clouds": {
            site.cloud: {
                "auth": {**auth, "project_name": "admin", "project_domain_name": "Default"},
                "region_name": REGION,
                "identity_api_version": 3,
                "interface": "public",
            },
            f"{site.cloud}-system": {
                "auth": {**auth, "system_scope": "all"},
                "region_name": REGION,
                "identity_api_version": 3,
            },
        }
    }
    write(site.clouds_yaml, json.dumps(clouds, indent=2) + "\n")  # JSON is YAML


def connect(site: LabSite) -> Any:
    """An openstacksdk connection to the site as the admin project."""
    import openstack  # not at the top: `status`, `env` and the tests never connect

    config = openstack.config.OpenStackConfig(config_files=[str(site.clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud=site.cloud))


def register_services(site: LabSite) -> None:
    """Service project, users (admin + service roles), services and endpoints."""
    conn = connect(site)
    idc = conn.identity
    dom = idc.find_domain("default")
    proj = idc.find_project("service", domain_id=dom.id) or idc.create_project(
        name="service", domain_id=dom.id
    )
    roles = {r: idc.find_role(r) or idc.create_role(name=r) for r in ("admin", "service")}
    for r in ("member", "reader"):
        idc.find_role(r) or idc.create_role(name=r)
    catalog = {
        "glance": ("image", site.url("glance")),
        "placement": ("placement", site.url("placement")),
        "nova": ("compute", site.url("nova", "/v2.1")),
        "neutron": ("network", site.url("neutron")),
        "cinder": ("block-storage", site.url("cinder", "/v3")),
    }
    for name, (stype, url) in catalog.items():
        user = idc.find_user(name, domain_id=dom.id)
        if user is None:
            user = idc.create_user(
                name=name, password=PASSWORD, domain_id=dom.id, default_project_id=proj.id
            )
        for role in roles.values():
            idc.assign_project_role_to_user(proj, user, role)
        svc = next((s for s in idc.services() if s.type == stype), None)
        if svc is None:
            svc = idc.create_service(name=name, type=stype, enabled=True)
        have = {(e.interface, e.url) for e in idc.endpoints(service_id=svc.id)}
        for iface in ("public", "internal", "admin"):
            if (iface, url) not in have:
                idc.create_endpoint(
                    service_id=svc.id, interface=iface, url=url, region_id=REGION, enabled=True
                )


def start_keystone(site: LabSite) -> None:
    c, d = site.etc / "keystone", site.data / "keystone"
    d.mkdir(parents=True, exist_ok=True)
    write(c / "keystone.conf", _ini({
        "DEFAULT": {"use_stderr": "true"},
        "database": {"connection": f"{site.db_url}/keystone"},
        "token": {"provider": "fernet"},
        "fernet_tokens": {"key_repository": d / "fernet-keys"},
        "fernet_receipts": {"key_repository": d / "fernet-keys"},
        "credential": {"key_repository": d / "credential-keys"},
    }))  # fmt: skip
    km = [str(site.venv / "bin/keystone-manage"), "--config-file", str(c / "keystone.conf")]
    with once(site, "keystone-db") as todo:
        if todo:
            ks = site.url("keystone", "/v3")
            for args in (
                ["db_sync"],
                ["fernet_setup", "--keystone-user", "root", "--keystone-group", "root"],
                ["credential_setup", "--keystone-user", "root", "--keystone-group", "root"],
                ["bootstrap", "--bootstrap-password", PASSWORD, "--bootstrap-region-id", REGION,
                 "--bootstrap-admin-url", ks, "--bootstrap-internal-url", ks,
                 "--bootstrap-public-url", ks],
            ):  # fmt: skip
                sh(site, *km, *args, log_name="keystone-setup")
    env = {"OS_KEYSTONE_CONFIG_DIR": str(c), "OS_KEYSTONE_CONFIG_FILES": "keystone.conf"}
    start_uwsgi(site, "keystone", site.ports["keystone"], "keystone.wsgi.api:application", env)
    wait_for("keystone", lambda: http_ok(site.url("keystone", "/v3")), 180)
    write_clouds_yaml(site)
    with once(site, "keystone-services") as todo:
        if todo:
            register_services(site)


def start_glance(site: LabSite) -> None:
    c, d = site.etc / "glance", site.data / "glance"
    for sub in ("images", "staging", "tasks", "lock"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    c.mkdir(parents=True, exist_ok=True)
    shutil.copy(site.venv / "etc/glance/glance-api-paste.ini", c)
    write(c / "glance-api.conf", _ini({
        "DEFAULT": {"use_stderr": "true", "enabled_backends": "fs:file",
                    "worker_self_reference_url": site.url("glance")},
        "database": {"connection": f"{site.db_url}/glance"},
        "paste_deploy": {"flavor": "keystone"},
        "glance_store": {"default_backend": "fs"},
        "fs": {"filesystem_store_datadir": d / "images"},
        "os_glance_staging_store": {"filesystem_store_datadir": d / "staging"},
        "os_glance_tasks_store": {"filesystem_store_datadir": d / "tasks"},
        "oslo_concurrency": {"lock_path": d / "lock"},
        "oslo_policy": {"enforce_new_defaults": "true"},
        "keystone_authtoken": _authtoken(site, "glance"),
    }))  # fmt: skip
    with once(site, "glance-db") as todo:
        if todo:
            sh(site, "glance-manage", "--config-file", c / "glance-api.conf", "db_sync",
               log_name="glance-setup")  # fmt: skip
    # Cinder uploads volumes to images with chunked requests; uwsgi's default chunk limit
    # (1 MiB) fails them with "unable to receive chunked part"
    start_uwsgi(site, "glance-api", site.ports["glance"], "glance.wsgi.api:application",
                {"OS_GLANCE_CONFIG_DIR": str(c)},
                extra=["--chunked-input-limit", str(64 << 20),
                       "--chunked-input-timeout", "300"])  # fmt: skip


def start_placement(site: LabSite) -> None:
    c = site.etc / "placement"
    write(c / "placement.conf", _ini({
        "DEFAULT": {"use_stderr": "true"},
        "placement_database": {"connection": f"{site.db_url}/placement"},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": _authtoken(site, "placement"),
    }))  # fmt: skip
    with once(site, "placement-db") as todo:
        if todo:
            sh(site, "placement-manage", "--config-file", c / "placement.conf", "db", "sync",
               log_name="placement-setup")  # fmt: skip
    start_uwsgi(site, "placement-api", site.ports["placement"], "placement.wsgi.api:application",
                {"OS_PLACEMENT_CONFIG_DIR": str(c)})  # fmt: skip


def start_nova(site: LabSite) -> None:
    c, d = site.etc / "nova", site.data / "nova"
    for sub in ("instances", "lock"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    c.mkdir(parents=True, exist_ok=True)
    shutil.copy(site.venv / "etc/nova/api-paste.ini", c)
    write(c / "nova.conf", _ini({
        "DEFAULT": {
            "use_stderr": "true", "host": site.compute_host, "my_ip": HOST,
            "transport_url": site.rabbit_url,
            # fake.FakeDriver draws a new node uuid per process and then refuses to
            # restart; this one derives it from the host name (uuid5), written below.
            "compute_driver": "fake.PredictableNodeUUIDDriver",
            # SmallFakeDriver reports 1 vCPU / 8 GiB: overcommit for scheduling room
            "cpu_allocation_ratio": "128.0", "ram_allocation_ratio": "128.0",
            "disk_allocation_ratio": "128.0",
            "state_path": d, "instances_path": d / "instances",
            # the fake driver never plugs a VIF, so ports stay DOWN
            "vif_plugging_is_fatal": "false", "vif_plugging_timeout": "0",
        },
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": f"{site.db_url}/nova_api"},
        "database": {"connection": f"{site.db_url}/nova"},
        "conductor": {"workers": 1},
        "scheduler": {"workers": 1, "discover_hosts_in_cells_interval": 10},
        "vnc": {"enabled": "false"},
        "oslo_concurrency": {"lock_path": d / "lock"},
        "oslo_messaging_notifications": {"driver": "noop"},
        "cinder": {"catalog_info": "block-storage::publicURL", "os_region_name": REGION,
                   **{k: v for k, v in _password_auth(site, "nova").items()
                      if k != "region_name"}},
        "service_user": _service_user(site, "nova"),
        "keystone_authtoken": _authtoken(site, "nova"),
        "placement": _password_auth(site, "placement"),
        "neutron": _password_auth(site, "neutron"),
        "glance": {"region_name": REGION},
    }))  # fmt: skip
    nm = [str(site.venv / "bin/nova-manage"), "--config-file", str(c / "nova.conf")]
    with once(site, "nova-db") as todo:
        if todo:
            sh(site, *nm, "api_db", "sync", log_name="nova-setup")
            cells = output(site, *nm, "cell_v2", "list_cells")
            if " cell0 " not in cells:
                sh(site, *nm, "cell_v2", "map_cell0", "--database_connection",
                   f"{site.db_url}/nova_cell0", log_name="nova-setup")  # fmt: skip
            if " cell1 " not in cells:
                sh(site, *nm, "cell_v2", "create_cell", "--name", "cell1", log_name="nova-setup")
            sh(site, *nm, "db", "sync", log_name="nova-setup")
    compute_id = d / "compute_id"
    if not compute_id.exists():
        compute_id.write_text(str(uuid.uuid5(uuid.NAMESPACE_DNS, site.compute_host)) + "\n")
    start_uwsgi(site, "nova-api", site.ports["nova"], "nova.wsgi.osapi_compute:application",
                {"OS_NOVA_CONFIG_DIR": str(c)})  # fmt: skip
    for svc in ("conductor", "scheduler", "compute"):
        start(site, f"nova-{svc}", [str(site.venv / f"bin/nova-{svc}"),
                                    "--config-file", str(c / "nova.conf")])  # fmt: skip


def start_neutron(site: LabSite) -> None:
    c, d = site.etc / "neutron", site.data / "neutron"
    (d / "lock").mkdir(parents=True, exist_ok=True)
    c.mkdir(parents=True, exist_ok=True)
    shutil.copy(site.venv / "etc/neutron/api-paste.ini", c)
    write(c / "neutron.conf", _ini({
        "DEFAULT": {
            "use_stderr": "true", "core_plugin": "ml2", "service_plugins": "ovn-router",
            "auth_strategy": "keystone", "transport_url": site.rabbit_url,
            "api_paste_config": c / "api-paste.ini", "state_path": d,
            "allow_overlapping_ips": "true",
            "notify_nova_on_port_status_changes": "true",
            "notify_nova_on_port_data_changes": "true",
            "api_workers": 1, "rpc_workers": 0,
        },
        "database": {"connection": f"{site.db_url}/neutron"},
        "oslo_concurrency": {"lock_path": d / "lock"},
        "oslo_messaging_notifications": {"driver": "noop"},
        "keystone_authtoken": _authtoken(site, "neutron"),
        "nova": _password_auth(site, "nova"),
    }))  # fmt: skip
    write(c / "ml2_conf.ini", _ini({
        "ml2": {"type_drivers": "geneve,flat,vlan", "tenant_network_types": "geneve",
                "mechanism_drivers": "ovn", "extension_drivers": "port_security",
                "overlay_ip_version": 4},
        "ml2_type_geneve": {"vni_ranges": "1:65536", "max_header_size": 38},
        "ml2_type_flat": {"flat_networks": "*"},
        "securitygroup": {"enable_security_group": "true"},
        "ovn": {"ovn_nb_connection": f"unix:{site.run}/ovnnb_db.sock",
                "ovn_sb_connection": f"unix:{site.run}/ovnsb_db.sock",
                "ovn_metadata_enabled": "false", "enable_distributed_floating_ip": "false"},
    }))  # fmt: skip
    confs = ["--config-file", str(c / "neutron.conf"), "--config-file", str(c / "ml2_conf.ini")]
    with once(site, "neutron-db") as todo:
        if todo:
            sh(site, "neutron-db-manage", *confs, "upgrade", "head", log_name="neutron-setup")
    # 2026.1 has no neutron-server binary: the API runs under uwsgi beside the worker
    start_uwsgi(site, "neutron-api", site.ports["neutron"], "neutron.wsgi.api:application",
                {"OS_NEUTRON_CONFIG_DIR": str(c),
                 "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini"})  # fmt: skip
    start(site, "neutron-ovn-maintenance",
          [str(site.venv / "bin/neutron-ovn-maintenance-worker"), *confs])  # fmt: skip


def start_cinder(site: LabSite) -> None:
    c, d = site.etc / "cinder", site.data / "cinder"
    for sub in ("lock", "backups", "conversion"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    c.mkdir(parents=True, exist_ok=True)
    shutil.copy(site.venv / "etc/cinder/api-paste.ini", c)
    write(c / "cinder.conf", _ini({
        "DEFAULT": {
            "use_stderr": "true", "host": f"seawall-lab-{site.name}-cinder", "my_ip": HOST,
            "transport_url": site.rabbit_url, "auth_strategy": "keystone",
            "api_paste_config": c / "api-paste.ini", "state_path": d,
            "image_conversion_dir": d / "conversion", "enabled_backends": "ceph",
            "glance_api_servers": site.url("glance"),
            "backup_driver": "cinder.backup.drivers.posix.PosixBackupDriver",
            "backup_posix_path": d / "backups",
            "rootwrap_config": site.venv / "etc/cinder/rootwrap.conf",
        },
        "database": {"connection": f"{site.db_url}/cinder"},
        "oslo_concurrency": {"lock_path": d / "lock"},
        "oslo_messaging_notifications": {"driver": "noop"},
        "ceph": {
            "volume_driver": "cinder.volume.drivers.rbd.RBDDriver",
            "volume_backend_name": "ceph", "rbd_pool": "volumes",
            "rbd_ceph_conf": site.ceph_conf, "rbd_user": "admin",
            "rbd_secret_uuid": "11111111-2222-3333-4444-555555555555",
            "rbd_flatten_volume_from_snapshot": "false", "report_discard_supported": "true",
        },
        "keystone_authtoken": _authtoken(site, "cinder"),
        "nova": _password_auth(site, "nova"),
        "service_user": _service_user(site, "cinder"),
    }))  # fmt: skip
    with once(site, "cinder-db") as todo:
        if todo:
            sh(site, "cinder-manage", "--config-file", c / "cinder.conf", "db", "sync",
               log_name="cinder-setup")  # fmt: skip
    start_uwsgi(site, "cinder-api", site.ports["cinder"], "cinder.wsgi.api:application", {},
                pyargv=f"--config-file {c / 'cinder.conf'}")  # fmt: skip
    for svc in ("scheduler", "volume", "backup"):
        start(site, f"cinder-{svc}", [str(site.venv / f"bin/cinder-{svc}"),
                                      "--config-file", str(c / "cinder.conf")])  # fmt: skip


def wait_for_ready(site: LabSite, timeout: float = 420) -> None:
    """Every API answers, a hypervisor and cinder-volume are up, the OVN agent is alive,
    and the compute host is mapped to its cell."""
    for service in ("keystone", "glance", "placement", "nova", "neutron", "cinder"):
        wait_for(service, lambda s=service: http_ok(site.url(s)), timeout)  # type: ignore[misc]
    conn = connect(site)

    def registered() -> bool:
        try:
            hv = [h for h in conn.compute.hypervisors(details=False) if h.state == "up"]
            cv = [s for s in conn.block_storage.services()
                  if s.binary == "cinder-volume" and s.state == "up"]  # fmt: skip
            ag = [a for a in conn.network.agents() if a.is_alive]
        except Exception:  # the APIs answer before their services register
            return False
        return bool(hv and cv and ag)

    wait_for("compute, volume and network services", registered, timeout, 2)
    nova_conf = site.etc / "nova" / "nova.conf"
    sh(site, site.venv / "bin/nova-manage", "--config-file", nova_conf, "cell_v2",
       "discover_hosts", log_name="nova-setup")  # fmt: skip


def set_up_project(site: LabSite) -> None:
    """The admin project's quotas lifted (the defaults, 10 volumes and 10 snapshots, run
    out within one test run), and a flat external network ``public`` (TEST-NET-3) for
    router gateways and floating IPs. Nothing is bridged to it: the addresses are
    bookkeeping, as every guest is fake."""
    conn = connect(site)
    project = conn.current_project_id
    conn.set_compute_quotas(project, instances=-1, cores=-1, ram=-1, key_pairs=-1,
                            server_groups=-1, server_group_members=-1)  # fmt: skip
    conn.set_volume_quotas(project, volumes=-1, snapshots=-1, gigabytes=-1, backups=-1)
    if conn.network.find_network("public") is not None:
        return
    net = conn.network.create_network(
        name="public",
        is_router_external=True,
        provider_network_type="flat",
        provider_physical_network="public",
    )
    conn.network.create_subnet(
        name="public-subnet",
        network_id=net.id,
        ip_version=4,
        cidr="203.0.113.0/24",
        gateway_ip="203.0.113.1",
        is_dhcp_enabled=False,
    )
