#!/usr/bin/python3
"""deploy/: the Dockerfile, docker-compose.yml, the Kubernetes manifests and the
systemd unit, checked against each other, against the metrics guide and
against the built binary (no Docker engine or cluster runs here):
- the run stage installs the Debian package of every shared library the
  binary needs;
- the image's ENV + CMD (`alice metrics-server`, no flags) start the real
  daemon and pass its HEALTHCHECK (alice health) and the guide's (curl);
- the systemd unit passes `systemd-analyze verify` and `security`."""

import os
import re
import shlex
import shutil
import subprocess
import tempfile

from promhelper import DEPLOY, SOURCE_ROOT, load_yaml, load_yaml_all, run_tests
import amtest  # noqa: E402,I100  (promhelper puts tests/ on sys.path)

KNOWN_ENV = {"ALICE_METRICS_HOST", "ALICE_METRICS_PORT", "ALICE_STATSD_HOST",
            "ALICE_STATSD_PORT", "ALICE_STATSD_SOCKET", "ALICE_METRICS_CONFIG",
            "ALICE_LOG_LEVEL", "ALICE_METRICS_ADDR", "ALICE_STATE_FILE",
            "ALICE_STATE_INTERVAL", "ALICE_METRICS_TTL"}
IMAGE_UID = 10001


# ------------------------------------------------------------------ Dockerfile
def dockerfile_stages():
    """[(from line, [(instruction, argument)])] with continuations joined."""
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, arg = line.partition(" ")
        instr = instr.upper()
        arg = re.sub(r"\s+", " ", arg.strip())
        if instr == "FROM":
            stages.append((arg, []))
        else:
            assert stages, "instruction before FROM: " + line
            stages[-1][1].append((instr, arg))
    return stages


def image_env():
    env = {}
    for instr, arg in dockerfile_stages()[-1][1]:
        if instr == "ENV":
            for item in shlex.split(arg):
                k, _, v = item.partition("=")
                env[k] = v
    return env


def run_stage_packages():
    pkgs = set()
    for instr, arg in dockerfile_stages()[-1][1]:
        if instr == "RUN" and "apt-get install" in arg:
            words = arg.split("apt-get install", 1)[1].split("&&")[0].split()
            pkgs |= {w for w in words if not w.startswith("-")}
    return pkgs


def test_dockerfile_multi_stage_debian12():
    stages = dockerfile_stages()
    assert len(stages) == 2, [s[0] for s in stages]
    assert stages[0][0] == "debian:12 AS build", stages[0][0]
    assert stages[1][0] == "debian:12-slim", stages[1][0]
    build = " ".join(a for i, a in stages[0][1] if i == "RUN")
    # The same install script as the README and CI, then meson.
    assert "tools/install-deps.sh" in build, build
    assert "meson setup" in build and "-Dtests=false" in build and "--buildtype=release" in build
    assert "ninja -C" in build and "meson install" in build and "--destdir /out" in build
    copies = [a for i, a in stages[1][1] if i == "COPY"]
    assert any(c.startswith("--from=build /out/") for c in copies), copies
    assert os.access(os.path.join(SOURCE_ROOT, "tools", "install-deps.sh"), os.X_OK)


def test_dockerfile_run_stage_contract():
    instrs = dockerfile_stages()[-1][1]
    get = lambda name: [a for i, a in instrs if i == name]  # noqa: E731
    (user,) = get("USER")
    assert user.split(":")[0] not in ("root", "0"), user
    assert user == "%d:%d" % (IMAGE_UID, IMAGE_UID), user
    exposed = " ".join(get("EXPOSE")).split()
    assert "9090" in exposed and "8125/udp" in exposed, exposed
    (hc,) = get("HEALTHCHECK")
    assert hc.endswith('CMD ["alice", "health"]'), hc
    assert get("CMD") == ['["alice", "metrics-server"]'], get("CMD")
    env = image_env()
    assert env["ALICE_METRICS_HOST"] == "0.0.0.0" and env["ALICE_STATSD_HOST"] == "0.0.0.0", env
    assert env.get("ALICE_METRICS_PORT", "9090") == "9090"
    assert set(env) <= KNOWN_ENV, set(env) - KNOWN_ENV
    assert {"curl", "libuv1", "libhttp-parser2.9", "libjansson4", "zlib1g"} <= run_stage_packages()


def test_run_stage_has_every_library_the_binary_needs():
    out = subprocess.run(["ldd", amtest.ALICE_BIN], stdout=subprocess.PIPE, check=True,
                         timeout=30).stdout.decode()
    libs = re.findall(r"=> (/\S+)", out)
    assert libs, out
    needed = {}
    for lib in libs:
        real = os.path.realpath(lib)
        owner = None
        for path in (lib, real, real.replace("/usr/lib/", "/lib/", 1),
                     lib.replace("/lib/", "/usr/lib/", 1)):
            p = subprocess.run(["dpkg-query", "-S", path], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, timeout=30)
            if p.returncode == 0:
                owner = p.stdout.decode().split(":")[0]
                break
        assert owner, "no Debian package owns %s" % lib
        needed[owner] = lib
    base = {"libc6", "libgcc-s1"}  # in debian:12-slim already
    missing = set(needed) - base - run_stage_packages()
    assert not missing, "run stage lacks %s" % {m: needed[m] for m in missing}


def test_image_env_and_cmd_start_the_daemon_and_pass_the_healthcheck():
    # The image's ENV and CMD as they are, except loopback addresses and free
    # ports (tests bind nothing but 127.0.0.1).
    env = amtest.clean_env(image_env())
    env["ALICE_METRICS_HOST"] = env["ALICE_STATSD_HOST"] = "127.0.0.1"
    env["ALICE_METRICS_PORT"] = "0"
    env["ALICE_STATSD_PORT"] = str(amtest.free_udp_port())
    sock_dir = tempfile.mkdtemp(prefix="alice-img-")
    env["ALICE_STATSD_SOCKET"] = os.path.join(sock_dir, "metrics.sock")
    log_path = os.path.join(sock_dir, "stderr.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([amtest.ALICE_BIN, "metrics-server"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        startup = amtest.Startup({"http", "udp", "unix"})
        if not amtest.wait_log_file(log_path, proc, startup):
            with open(log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            raise AssertionError("listening on %s only:\n%s" % (sorted(startup.listening), text))
        seen = startup.listening
        assert seen["http"].group(2) == "127.0.0.1", seen["http"].group(0)
        assert seen["udp"].group(3) == env["ALICE_STATSD_PORT"], seen["udp"].group(0)
        port = int(seen["http"].group(3))
        # the image's check, with the image's environment (ALICE_METRICS_HOST
        # 0.0.0.0 in the image, here 127.0.0.1; the port the daemon took)
        hc_env = dict(env, ALICE_METRICS_HOST="0.0.0.0", ALICE_METRICS_PORT=str(port))
        p = subprocess.run([amtest.ALICE_BIN, "health"], env=hc_env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=15)
        assert p.returncode == 0, p.stderr
        assert b'"status"' in p.stdout and b'"ok"' in p.stdout, p.stdout
        # and the guide's curl check still works (curl stays in the image)
        hc = "curl -f http://localhost:9090/health || exit 1".replace("9090", str(port))
        p = subprocess.run(["sh", "-c", hc], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=15)
        assert p.returncode == 0, p.stderr
    finally:
        amtest.stop_process(proc)
        log.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


# ---------------------------------------------------------------- compose
def compose():
    return load_yaml(os.path.join(DEPLOY, "docker-compose.yml"))


def test_compose_has_the_guides_services():
    c = compose()
    s = c["services"]
    assert {"alice-metrics", "prometheus", "grafana", "worker"} <= set(s), set(s)
    am = s["alice-metrics"]
    assert am["image"] == "alicemultiverse:latest"
    assert am["command"] == ["alice", "metrics-server"]
    assert "127.0.0.1:9090:9090" in am["ports"], am["ports"]
    assert am["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, am["build"]
    assert s["prometheus"]["ports"] == ["9091:9090"]
    # Prometheus' target is the sidecar's service name and container port.
    cfg = load_yaml(os.path.join(DEPLOY, "prometheus", "prometheus.yml"))
    assert cfg["scrape_configs"][0]["static_configs"][0]["targets"] == ["alice-metrics:9090"]


def test_compose_is_as_strict_as_the_manifest():
    """The daemon and the worker run read-only, without capabilities or
    privilege gain, and the daemon's ports are published on the host's
    loopback only."""
    s = compose()["services"]
    for name in ("alice-metrics", "worker"):
        svc = s[name]
        assert svc.get("read_only") is True, name
        assert svc.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
    for p in s["alice-metrics"]["ports"]:
        assert p.startswith("127.0.0.1:"), p
    # read-only: everything the daemon writes is in a volume
    env = s["alice-metrics"]["environment"]
    mounts = [v.split(":")[1] for v in s["alice-metrics"]["volumes"]]
    for path in (env["ALICE_STATSD_SOCKET"], env["ALICE_STATE_FILE"]):
        assert any(path.startswith(m + "/") for m in mounts), (path, mounts)


def test_compose_mounts_exist_and_rules_sit_beside_the_config():
    c = compose()
    named = set(c.get("volumes") or {})
    for name, svc in c["services"].items():
        for v in svc.get("volumes", []):
            src, dst = v.split(":")[:2]
            if src.startswith("."):
                assert os.path.exists(os.path.join(DEPLOY, src)), (name, v)
            else:
                assert src in named, "undeclared volume %s in %s" % (src, name)
        for k in (svc.get("environment") or {}):
            if k.startswith("ALICE_"):
                assert k in KNOWN_ENV, (name, k)
    mounts = dict(v.split(":")[:2] for v in c["services"]["prometheus"]["volumes"])
    cfg_dst = mounts["./prometheus/prometheus.yml"]
    assert cfg_dst == "/etc/prometheus/prometheus.yml"
    for rf in load_yaml(os.path.join(DEPLOY, "prometheus", "prometheus.yml"))["rule_files"]:
        assert mounts["./prometheus/" + rf] == os.path.join(os.path.dirname(cfg_dst), rf), rf


def test_compose_worker_shares_the_unix_socket():
    s = compose()["services"]
    sock = s["alice-metrics"]["environment"]["ALICE_STATSD_SOCKET"]
    vol_of = lambda svc: {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}  # noqa: E731
    d_mounts, w_mounts = vol_of(s["alice-metrics"]), vol_of(s["worker"])
    sock_dir = os.path.dirname(sock)
    assert sock_dir in d_mounts and d_mounts[sock_dir] == w_mounts.get(sock_dir), (d_mounts, w_mounts)
    assert not d_mounts[sock_dir].startswith("."), "the socket volume should be a named volume"
    assert s["worker"]["environment"]["ALICE_METRICS_ADDR"] == "unix://" + sock


# ---------------------------------------------------------------- kubernetes
def k8s():
    docs = []
    kdir = os.path.join(DEPLOY, "kubernetes")
    kust = load_yaml(os.path.join(kdir, "kustomization.yaml"))
    for f in kust["resources"]:
        docs += load_yaml_all(os.path.join(kdir, f))
    return {d["kind"]: d for d in docs}


def test_k8s_service_is_the_guides():
    objs = k8s()
    svc, dep = objs["Service"], objs["Deployment"]
    assert svc["metadata"]["name"] == "alice-metrics"
    ann = svc["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9090", ann
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 9090 and port["name"] == "metrics", port
    labels = dep["spec"]["template"]["metadata"]["labels"]
    sel = svc["spec"]["selector"]
    assert sel and all(labels.get(k) == v for k, v in sel.items()), (sel, labels)
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_sidecar_shares_the_socket_and_is_locked_down():
    dep = k8s()["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    side, worker = containers["alice-metrics"], containers["worker"]
    env = {e["name"]: e["value"] for e in side["env"]}
    assert set(env) <= KNOWN_ENV, env
    sock = env["ALICE_STATSD_SOCKET"]
    vols = {v["name"]: v for v in pod["volumes"]}
    mount_of = lambda c: {m["mountPath"]: m["name"] for m in c["volumeMounts"]}  # noqa: E731
    vname = mount_of(side)[os.path.dirname(sock)]
    assert "emptyDir" in vols[vname], vols[vname]
    assert mount_of(worker).get(os.path.dirname(sock)) == vname
    wenv = {e["name"]: e["value"] for e in worker["env"]}
    assert wenv["ALICE_METRICS_ADDR"] == "unix://" + sock
    assert env["ALICE_METRICS_HOST"] == "0.0.0.0"
    assert side["command"] == ["alice", "metrics-server"]
    (port,) = side["ports"]
    assert port["containerPort"] == 9090 and port["name"] == "metrics"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert side[probe]["httpGet"] == {"path": "/health", "port": "metrics"}, probe
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == IMAGE_UID
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    for c in containers.values():
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert c["resources"]["limits"], c["name"]


# ---------------------------------------------------------------- systemd
UNIT = os.path.join(DEPLOY, "systemd", "alice-metrics.service")


def unit_settings():
    out, section = {}, None
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            k, _, v = line.partition("=")
            out.setdefault((section, k), []).append(v)
    return out


def test_systemd_unit_is_hardened():
    u = unit_settings()
    one = lambda k: u[("Service", k)][-1]  # noqa: E731
    assert one("ExecStart").split()[1:] == ["metrics-server"], one("ExecStart")
    assert "-HUP" in one("ExecReload")
    assert one("DynamicUser") == "yes" or one("User") not in ("", "root")
    for k, v in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "ProtectHome": "yes",
                 "PrivateTmp": "yes", "PrivateDevices": "yes", "RuntimeDirectory": "alice",
                 "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
                 "MemoryDenyWriteExecute": "yes"}.items():
        assert one(k) == v, (k, one(k))
    envs = dict(e.split("=", 1) for e in u[("Service", "Environment")])
    assert set(envs) <= KNOWN_ENV, envs
    assert os.path.dirname(envs["ALICE_STATSD_SOCKET"]) == "/run/alice"
    assert u[("Install", "WantedBy")] == ["multi-user.target"]


def _mib(v):
    """Memory in MiB from a compose (768m), Kubernetes (768Mi) or systemd
    (768M) value."""
    m = re.fullmatch(r"(\d+)\s*(m|Mi|M|g|Gi|G)", str(v))
    assert m, v
    n = int(m.group(1))
    return n * 1024 if m.group(2)[0] in "gG" else n


def test_memory_limits_leave_room_for_the_series_budget():
    """The daemon's memory limit is the same everywhere and holds what
    deploy/README.md's arithmetic says the default limits need: about
    5 x limits.max_series_bytes (128 MiB) + 64 MiB."""
    side = {c["name"]: c for c in
            k8s()["Deployment"]["spec"]["template"]["spec"]["containers"]}["alice-metrics"]
    limits = {
        "compose": _mib(compose()["services"]["alice-metrics"]["mem_limit"]),
        "kubernetes": _mib(side["resources"]["limits"]["memory"]),
        "systemd": _mib(unit_settings()[("Service", "MemoryMax")][-1]),
    }
    assert len(set(limits.values())) == 1, limits
    assert limits["compose"] >= 5 * 128 + 64, limits
    with open(os.path.join(DEPLOY, "README.md")) as f:
        assert "%d MiB" % limits["compose"] in f.read(), "deploy/README.md explains the limit"


def test_systemd_analyze_verify_and_security():
    sa = shutil.which("systemd-analyze")
    if not sa:
        print("note: systemd-analyze not installed; static checks only")
        return
    tmp = tempfile.mkdtemp(prefix="alice-unit-")
    try:
        # verify wants ExecStart's binary to exist: point it at the built one.
        with open(UNIT) as f:
            text = f.read().replace("/usr/local/bin/alice", os.path.abspath(amtest.ALICE_BIN))
        path = os.path.join(tmp, "alice-metrics.service")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([sa, "verify", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        assert p.returncode == 0 and "alice-metrics.service" not in out, out
        p = subprocess.run([sa, "security", "--offline=true", "--no-pager", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
        assert m, out[-2000:]
        assert float(m.group(1)) <= 2.0, "exposure %s:\n%s" % (m.group(1), out[-3000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_tests(globals())
