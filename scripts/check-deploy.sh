#!/usr/bin/env bash
# Checks what ships next to the binary, offline: the Kubernetes manifests
# against the Kubernetes API schemas (kubernetes-validate, from PyPI, in a
# cached venv), the Prometheus configuration and rules with promtool
# (including the rules' unit tests), and the docker-compose file, the
# Dockerfile and the Grafana files for structure and for the paths they use.
# There is no Docker engine or cluster here: this is what can be checked
# without one. scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${TFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcp-flow-exporter}"
venv="$cache/validate-venv"
# The schemas come with the package; pinned so a new release cannot change
# what passes.
kv_version=1.37.0
k8s_version=1.30.0

log() { printf 'check-deploy: %s\n' "$*" >&2; }

if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$kv_version"; then
    log "installing kubernetes-validate $kv_version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "kubernetes-validate==$kv_version"
fi

log "Kubernetes manifests against the $k8s_version schemas"
manifests=(deploy/namespace.yaml deploy/serviceaccount.yaml deploy/clusterrole.yaml
    deploy/clusterrolebinding.yaml deploy/labels-configmap.yaml deploy/service.yaml
    deploy/daemonset.yaml)
"$venv/bin/kubernetes-validate" --quiet --strict -k "$k8s_version" "${manifests[@]}"

promtool="$(scripts/fetch-prometheus.sh)/promtool"
log "Prometheus configuration and rules"
"$promtool" check config prometheus/prometheus.yml >/dev/null
"$promtool" check rules prometheus/rules.yml >/dev/null
"$promtool" test rules prometheus/rules_test.yml >/dev/null

log "kustomizations, PodMonitor, docker-compose, Dockerfile, Grafana files"
"$venv/bin/python" - <<'EOF'
import json, os, re, sys, yaml

failures = []
def check(ok, what):
    if not ok:
        failures.append(what)

def load(path):
    with open(path) as f:
        return yaml.safe_load(f)

# Every kustomization lists files that exist.
for k in ["deploy/kustomization.yaml", "deploy/prometheus-operator/kustomization.yaml"]:
    base = os.path.dirname(k)
    for r in load(k)["resources"]:
        check(os.path.exists(os.path.join(base, r)), f"{k}: missing resource {r}")

# The PodMonitor is a CRD kubernetes-validate has no schema for: check that
# it selects the DaemonSet's pods and scrapes the port the DaemonSet names.
ds = load("deploy/daemonset.yaml")
pm = load("deploy/prometheus-operator/podmonitor.yaml")
pod_labels = ds["spec"]["template"]["metadata"]["labels"]
ports = {p["name"] for c in ds["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
check(pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["kind"] == "PodMonitor", "PodMonitor kind")
check(all(pod_labels.get(k) == v for k, v in pm["spec"]["selector"]["matchLabels"].items()),
      "PodMonitor selector does not match the DaemonSet's pods")
for ep in pm["spec"]["podMetricsEndpoints"]:
    check(ep["port"] in ports, f"PodMonitor port {ep['port']} is not a DaemonSet port")
svc = load("deploy/service.yaml")
check(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selector")

# docker-compose: the services, and every file it mounts exists.
compose = load("docker-compose.yml")
check(set(compose["services"]) == {"tcp-flow-exporter", "prometheus", "grafana"}, "compose services")
for name, svc in compose["services"].items():
    for volume in svc.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("./"):
            check(os.path.exists(source), f"compose {name}: {source} does not exist")
    for dep in svc.get("depends_on", []):
        check(dep in compose["services"], f"compose {name}: depends on unknown {dep}")

# Dockerfile: every COPY source from the build context exists.
for line in open("Dockerfile"):
    words = line.split()
    if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
        for source in words[1:-1]:
            check(os.path.exists(source), f"Dockerfile: COPY {source} does not exist")

# Grafana: provisioning parses; dashboards are JSON with unique uids and a
# datasource variable every target uses.
for p in ["grafana/provisioning/datasources/prometheus.yml", "grafana/provisioning/dashboards/dashboards.yml"]:
    load(p)
uids = set()
for name in sorted(os.listdir("grafana/dashboards")):
    d = json.load(open(os.path.join("grafana/dashboards", name)))
    check(d["uid"] not in uids, f"{name}: duplicate uid {d['uid']}")
    uids.add(d["uid"])
    variables = {v["name"]: v for v in d["templating"]["list"]}
    check(variables.get("datasource", {}).get("type") == "datasource", f"{name}: no datasource variable")
    def targets(panels):
        for p in panels:
            yield from p.get("targets", [])
            yield from targets(p.get("panels", []))
    for t in targets(d["panels"]):
        check(t.get("datasource", {}).get("uid") == "${datasource}", f"{name}: a target ignores $datasource")
check(len(uids) == 3, f"expected 3 dashboards, found {len(uids)}")

if failures:
    print("\n".join("check-deploy: FAILED: " + f for f in failures), file=sys.stderr)
    sys.exit(1)
EOF
log "all checks passed"
