#!/usr/bin/env bash
# Checks what ships next to the binary, offline: the Kubernetes manifests
# against the Kubernetes API schemas (kubernetes-validate, from PyPI, in a
# cached venv), the Prometheus configuration and rules with promtool
# (including the rules' unit tests), the identity wiring (RBAC, NODE_NAME,
# the cgroup and labels mounts and their flags), and the docker-compose file,
# the Dockerfile and the Grafana files (the who-talks-to-whom dashboard's
# node graph and filters, and the network cost dashboard's currency, UTC
# month and recording rules, included) for structure and for the paths they
# use.
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

log "kustomizations, PodMonitors, identity and web-config wiring, docker-compose, Dockerfile, Grafana files"
secured_ds="$(mktemp --suffix=.yaml)"
trap 'rm -f "$secured_ds"' EXIT
SECURED_DS="$secured_ds" "$venv/bin/python" - <<'EOF'
import json, os, re, sys, yaml

failures = []
def check(ok, what):
    if not ok:
        failures.append(what)

def load(path):
    with open(path) as f:
        return yaml.safe_load(f)

# Every kustomization lists files that exist.
for k in ["deploy/kustomization.yaml", "deploy/prometheus-operator/kustomization.yaml",
          "deploy/secured/kustomization.yaml"]:
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

# Identity: the binding grants the ClusterRole to the DaemonSet's account,
# whose token the pod mounts; NODE_NAME comes from the downward API;
# --labels.file is a key of the optional ConfigMap, mounted as a directory
# (a subPath would never see an update); --cgroup.root is the host's cgroup
# mount, read-only.
role, binding = load("deploy/clusterrole.yaml"), load("deploy/clusterrolebinding.yaml")
labels_cm = load("deploy/labels-configmap.yaml")
pod = ds["spec"]["template"]["spec"]
[container] = pod["containers"]
check(binding["roleRef"]["name"] == role["metadata"]["name"], "ClusterRoleBinding names another role")
check(binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                               "namespace": ds["metadata"]["namespace"]}],
      "ClusterRoleBinding subject is not the DaemonSet's ServiceAccount")
check(pod.get("automountServiceAccountToken") is True, "the exporter's pod does not mount its token")
check(all(set(r["verbs"]) <= {"get", "list", "watch"} for r in role["rules"]), "ClusterRole is not read-only")
env = {e["name"]: e for e in container.get("env", [])}
check(env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
      "NODE_NAME is not spec.nodeName")
flags = dict(a.split("=", 1) for a in container["args"] if "=" in a)
mounts = {m["name"]: m for m in container["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
lm = mounts.get("labels", {})
check(lm.get("readOnly") is True and "subPath" not in lm, "labels volume: mount read-only, without subPath")
check(volumes.get("labels", {}).get("configMap", {}).get("name") == labels_cm["metadata"]["name"]
      and volumes["labels"]["configMap"].get("optional") is True,
      "labels volume is not the optional labels ConfigMap")
check(os.path.dirname(flags.get("--labels.file", "")) == lm.get("mountPath")
      and os.path.basename(flags.get("--labels.file", "")) in labels_cm["data"],
      "--labels.file is not a key of the mounted labels ConfigMap")
check("networks" in yaml.safe_load(labels_cm["data"]["networks.yaml"]), "labels ConfigMap has no networks list")
cm = mounts.get("host-cgroup", {})
check(cm.get("readOnly") is True and flags.get("--cgroup.root") == cm.get("mountPath")
      and volumes.get("host-cgroup", {}).get("hostPath", {}).get("path") == "/sys/fs/cgroup",
      "--cgroup.root is not the host's /sys/fs/cgroup mounted read-only")

# deploy/secured/: the DaemonSet with the overlay's JSON patch applied
# (kubernetes-validate checks it below) passes --web.config.file, a key of
# the Secret the kustomization generates, mounted as a directory; the TLS
# Secret is mounted where web.yml looks; the probes need no credentials;
# the overlay's PodMonitor scrapes https with a client certificate and
# basic auth.
import copy
secured = load("deploy/secured/kustomization.yaml")
[patch_ref] = secured["patches"]
check(patch_ref["target"] == {"kind": "DaemonSet", "name": ds["metadata"]["name"]}, "secured: patch target")
sds = copy.deepcopy(ds)
for op in load(os.path.join("deploy/secured", patch_ref["path"])):
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node = sds
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if op["op"] == "add" and last == "-":
        node.append(op["value"])
    elif op["op"] in ("add", "replace"):
        node[int(last) if isinstance(node, list) else last] = op["value"]
    else:
        check(False, f"secured: unexpected patch op {op['op']}")
with open(os.environ["SECURED_DS"], "w") as f:
    yaml.safe_dump(sds, f)
[sc] = sds["spec"]["template"]["spec"]["containers"]
sflags = dict(a.split("=", 1) for a in sc["args"] if "=" in a)
smounts = {m["mountPath"]: m for m in sc["volumeMounts"]}
svolumes = {v["name"]: v for v in sds["spec"]["template"]["spec"]["volumes"]}
[gen] = secured["secretGenerator"]
web_file = sflags.get("--web.config.file", "")
web_mount = smounts.get(os.path.dirname(web_file), {})
check(os.path.basename(web_file) in gen["files"] and "subPath" not in web_mount
      and svolumes.get(web_mount.get("name"), {}).get("secret", {}).get("secretName") == gen["name"],
      "secured: --web.config.file is not a key of the generated Secret, mounted as a directory")
web = load("deploy/secured/web.yml")
for key in ["cert_file", "key_file", "client_ca_file"]:
    path = web["tls_server_config"][key]
    mount = smounts.get(os.path.dirname(path), {})
    check(mount.get("readOnly") is True and "subPath" not in mount
          and "secret" in svolumes.get(mount.get("name"), {}),
          f"secured: web.yml {key} {path} is not in a Secret mounted as a directory")
for probe in ["livenessProbe", "readinessProbe"]:
    check("tcpSocket" in sc[probe], f"secured: {probe} needs credentials (use tcpSocket)")
spm = load("deploy/secured/podmonitor.yaml")
check(all(pod_labels.get(k) == v for k, v in spm["spec"]["selector"]["matchLabels"].items()),
      "secured PodMonitor selector does not match the DaemonSet's pods")
for ep in spm["spec"]["podMetricsEndpoints"]:
    check(ep["port"] in ports and ep.get("scheme") == "https", "secured PodMonitor: port or scheme")
    tls = ep.get("tlsConfig", {})
    check(all(k in tls for k in ["ca", "cert", "keySecret"]) and "basicAuth" in ep,
          "secured PodMonitor: needs tlsConfig ca, cert, keySecret and basicAuth")

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
    check(d["uid"].startswith("tfe-"), f"{name}: uid {d['uid']} does not start with tfe-")
    check("tcp-flow-exporter" in d.get("tags", []), f"{name}: not tagged tcp-flow-exporter")
check(len(uids) == 5, f"expected 5 dashboards, found {len(uids)}")

# The who-talks-to-whom dashboard. Grafana's node graph takes an edges frame
# (a frame with a `source` field) and, without a nodes frame, makes the nodes
# from the edges: its one target must be an instant table query whose series
# carry id, source and target labels, and whose value column is renamed
# mainstat. Its filters are query variables over the local end's labels,
# whose All must also match flows without them (plain hosts): allValue .*.
# tests/prometheus.rs checks what every query returns.
who = json.load(open("grafana/dashboards/who-talks-to-whom.json"))
graphs = [p for p in who["panels"] if p["type"] == "nodegraph"]
check(len(graphs) == 1, "who-talks-to-whom: expected one nodegraph panel")
for g in graphs:
    [t] = g["targets"]
    check(t.get("format") == "table" and t.get("instant") is True and t.get("range") is False,
          "who-talks-to-whom: the node graph's query must be an instant table query")
    for label in ["id", "source", "target"]:
        check(f'"{label}"' in t["expr"], f"who-talks-to-whom: node graph query makes no {label} label")
    renames = {}
    for tr in g.get("transformations", []):
        if tr["id"] == "organize":
            renames.update(tr["options"].get("renameByName", {}))
    check(renames.get("Value") == "mainstat", "who-talks-to-whom: node graph value is not renamed mainstat")
variables = {v["name"]: v for v in who["templating"]["list"]}
for var, label in [("namespace", "src_namespace"), ("workload", "src_workload")]:
    v = variables.get(var, {})
    check(v.get("type") == "query" and v.get("includeAll") and v.get("allValue") == ".*",
          f"who-talks-to-whom: ${var} must be a query variable with All = .*")
    check(re.fullmatch(r"label_values\(tcp_flow_sent_bytes_total\{.*\}, " + label + r"\)", v.get("query", "")) is not None,
          f"who-talks-to-whom: ${var} does not list {label}")
def who_targets(panels):
    for p in panels:
        for t in p.get("targets", []):
            yield p["title"], t
for title, t in who_targets(who["panels"]):
    if "_bytes_total" in t["expr"]:
        for var in ["$job", "$instance", "$namespace", "$workload", "$__rate_interval"]:
            check(var in t["expr"], f"who-talks-to-whom: {title} ({t['refId']}) ignores {var}")

# The network cost dashboard. Money in two currencies never adds up: every
# cost query selects $currency (a single-value variable). The month panels
# cover the month so far in UTC, the clouds' billing month, which is also
# what days_in_month() and day_of_month() count in. Every recording rule it
# reads is one rules.yml records.
cost = json.load(open("grafana/dashboards/network-cost.json"))
variables = {v["name"]: v for v in cost["templating"]["list"]}
currency = variables.get("currency", {})
check(currency.get("type") == "query" and not currency.get("multi") and not currency.get("includeAll"),
      "network-cost: $currency must be a single-value query variable")
check(cost.get("timezone") == "utc", "network-cost: the dashboard's time zone is not UTC")
recorded = set(re.findall(r"^\s*- record: (\S+)", open("prometheus/rules.yml").read(), re.M))
for p in cost["panels"]:
    for t in p.get("targets", []):
        expr = t["expr"]
        if "tcp_flow_cost" in expr:
            check('currency=~"$currency"' in expr, f"network-cost: {p['title']} ({t['refId']}) ignores $currency")
        for var in ["$job", "$instance"]:
            check(var in expr, f"network-cost: {p['title']} ({t['refId']}) ignores {var}")
        for rule in re.findall(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", expr):
            check(rule in recorded, f"network-cost: {p['title']} reads {rule}, which rules.yml does not record")
    if p["title"].startswith(("Month to date", "Month-end projection")):
        check(p.get("timeFrom") == "now/M", f"network-cost: {p['title']} does not cover the month so far")

if failures:
    print("\n".join("check-deploy: FAILED: " + f for f in failures), file=sys.stderr)
    sys.exit(1)
EOF
log "the DaemonSet of deploy/secured/ against the $k8s_version schemas"
"$venv/bin/kubernetes-validate" --quiet --strict -k "$k8s_version" "$secured_ds"

log "all checks passed"
