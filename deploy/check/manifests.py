#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests (deploy/check.sh runs it).

For every rendered kustomization (one multi-document YAML file each):
1. each object is validated offline against the Kubernetes JSON schemas of
   `kubernetes-validate` (strict: unknown fields are errors), for every version in
   KUBE_VERSIONS; objects of CRDs (KEDA, prometheus-operator) have no schema there and
   are skipped with a note;
2. each container that runs `floodgate` or `floodgate-control` is run with `--check`,
   with its own command line, on the files its volume mounts would hold: ConfigMaps
   and Secrets of the same render are written under a temporary root at their mount
   paths (Secrets that are not in the render are stubbed: STUB_SECRETS), and the
   mount paths named in those files are rewritten to point under that root;
3. each `healthcode-app` container's flags are ones `healthcode-app --help` lists;
4. each container's program is a binary the image has (COPY lines of the Dockerfile).

Usage: manifests.py BIN_DIR DOCKERFILE RENDERED.yaml...   (exit 0 all good, 1 not)
"""

import base64
import os
import re
import subprocess
import sys
import tempfile

import yaml

# The oldest Kubernetes the manifests need (native sidecars, the preStop `sleep`
# action: 1.30) and the newest the schema package ships.
KUBE_VERSIONS = ["1.30.0", "1.37.0"]
# API groups whose objects are CRDs (no schema in kubernetes-validate).
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
PROXY_BINARIES = ("floodgate", "floodgate-control")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEV_CERTS = os.path.join(REPO, "configs", "certs")
# Secrets an operator creates (not in any render): what --check reads in their place.
STUB_SECRETS = {
    "floodgate-gateway-tls": {
        "tls.crt": ("file", os.path.join(DEV_CERTS, "code.example.gov.crt")),
        "tls.key": ("file", os.path.join(DEV_CERTS, "code.example.gov.key")),
    },
    "floodgate-tokens": {
        "proxy": ("text", "stub-proxy-token-for-check-0000"),
        "app": ("text", "stub-app-token-for-check-00000"),
        "operator": ("text", "stub-operator-token-for-check-0"),
        "admin": ("text", "stub-admin-token-for-check-0000"),
    },
}


class Report:
    def __init__(self):
        self.failures = []
        self.notes = set()

    def fail(self, where, what):
        self.failures.append(f"{where}: {what}")
        print(f"  FAIL {where}: {what}")


def object_name(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_schemas(render, docs, report):
    import kubernetes_validate  # installed by deploy/check.sh

    for doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            report.notes.add(
                f"{doc['kind']} ({doc['apiVersion']}): a CRD, no schema in kubernetes-validate: "
                "schema validation skipped (rendered and parsed only)"
            )
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                report.fail(f"{render}: {object_name(doc)} (Kubernetes {version})", f"{path}: {e.message}")
            except Exception as e:  # noqa: BLE001 - an unknown kind is a failure too
                report.fail(f"{render}: {object_name(doc)} (Kubernetes {version})", str(e))


def volume_files(volume, by_kind, report, where):
    """The files a volume holds: {relative path: bytes}, or None for an emptyDir."""
    if "emptyDir" in volume:
        return {}
    if "configMap" in volume:
        name = volume["configMap"]["name"]
        cm = by_kind.get(("ConfigMap", name))
        if cm is None:
            report.fail(where, f"volume {volume['name']}: ConfigMap {name} is not in the render")
            return None
        data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        items = volume["configMap"].get("items")
    elif "secret" in volume:
        name = volume["secret"]["secretName"]
        secret = by_kind.get(("Secret", name))
        if secret is not None:
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
        elif name in STUB_SECRETS:
            report.notes.add(f"Secret {name}: not in the render (created by the operator): stubbed for --check")
            data = {}
            for key, (kind, value) in STUB_SECRETS[name].items():
                data[key] = open(value, "rb").read() if kind == "file" else value.encode()
        else:
            report.fail(where, f"volume {volume['name']}: Secret {name} is neither rendered nor stubbed")
            return None
        items = volume["secret"].get("items")
    else:
        report.fail(where, f"volume {volume['name']}: a kind this check does not know")
        return None
    if items:
        missing = [i["key"] for i in items if i["key"] not in data]
        if missing:
            report.fail(where, f"volume {volume['name']}: keys {missing} not in the object")
        return {i["path"]: data[i["key"]] for i in items if i["key"] in data}
    return data


def check_proxy_container(render, pod_name, container, volumes, by_kind, bin_dir, report):
    where = f"{render}: {pod_name}/{container['name']}"
    command = list(container.get("command") or []) + list(container.get("args") or [])
    program = command[0]
    if "--config" not in command:
        report.fail(where, f"{program} has no --config")
        return
    with tempfile.TemporaryDirectory(prefix="floodgate-deploy-check-") as root:
        mounts = sorted(container.get("volumeMounts") or [], key=lambda m: -len(m["mountPath"]))
        written = []
        for mount in mounts:
            volume = volumes.get(mount["name"])
            if volume is None:
                report.fail(where, f"volumeMount {mount['name']}: no such volume")
                return
            files = volume_files(volume, by_kind, report, where)
            if files is None:
                return
            target = root + mount["mountPath"]
            os.makedirs(target, exist_ok=True)
            for rel, content in files.items():
                path = os.path.join(target, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(content)
                written.append(path)
        # Absolute paths in the configs name mount paths: point them under the root.
        for path in written:
            if not path.endswith((".yaml", ".yml")):
                continue
            text = open(path, encoding="utf-8").read()
            for mount in mounts:
                text = re.sub(r"(?<![\w/.])" + re.escape(mount["mountPath"]) + r"(?=/|\b)",
                              root + mount["mountPath"], text)
            open(path, "w", encoding="utf-8").write(text)
        i = command.index("--config")
        args = command[1:]
        args[i] = root + command[i + 1]  # the value after --config (index shifted by one)
        run = [os.path.join(bin_dir, program)] + args + ["--check"]
        done = subprocess.run(run, capture_output=True, text=True, timeout=30,
                              env={"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1"})
        shown = " ".join([program] + command[1:] + ["--check"])
        if done.returncode != 0:
            out = (done.stdout + done.stderr).replace(root, "")
            report.fail(where, f"`{shown}` exit {done.returncode}:\n{out}")
        else:
            print(f"  ok   {where}: {shown}")


def check_app_flags(render, pod_name, container, bin_dir, report, cache={}):
    where = f"{render}: {pod_name}/{container['name']}"
    if "help" not in cache:
        cache["help"] = subprocess.run([os.path.join(bin_dir, "healthcode-app"), "--help"],
                                       capture_output=True, text=True, timeout=30).stdout
    known = set(re.findall(r"--[a-z][a-z-]*", cache["help"]))
    command = list(container.get("command") or []) + list(container.get("args") or [])
    unknown = [a for a in command[1:] if a.startswith("--") and a.split("=")[0] not in known]
    if unknown:
        report.fail(where, f"healthcode-app does not know {unknown}")
    else:
        print(f"  ok   {where}: healthcode-app flags")


def image_binaries(dockerfile):
    text = open(dockerfile, encoding="utf-8").read()
    return set(re.findall(r"^COPY --from=\S+ \S+/target/release/(\S+) /usr/local/bin/\1$", text, re.M))


def main(argv):
    bin_dir, dockerfile, renders = argv[1], argv[2], argv[3:]
    report = Report()
    in_image = image_binaries(dockerfile)
    for render in renders:
        name = os.path.relpath(render)
        print(f"== {name}")
        docs = [d for d in yaml.safe_load_all(open(render, encoding="utf-8")) if d]
        validate_schemas(name, docs, report)
        by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        for doc in docs:
            if doc["kind"] not in ("Deployment", "DaemonSet", "StatefulSet"):
                continue
            spec = doc["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in spec.get("volumes") or []}
            for container in (spec.get("initContainers") or []) + spec["containers"]:
                command = list(container.get("command") or [])
                if not command:
                    report.fail(f"{name}: {object_name(doc)}/{container['name']}", "no command (the image has no entrypoint)")
                    continue
                if command[0] not in in_image:
                    report.fail(f"{name}: {object_name(doc)}/{container['name']}",
                                f"runs {command[0]}, which the image does not have ({sorted(in_image)})")
                    continue
                if command[0] in PROXY_BINARIES:
                    check_proxy_container(name, object_name(doc), container, volumes, by_kind, bin_dir, report)
                elif command[0] == "healthcode-app":
                    check_app_flags(name, object_name(doc), container, bin_dir, report)
    for note in sorted(report.notes):
        print(f"  note {note}")
    if report.failures:
        print(f"manifests: {len(report.failures)} failure(s)")
        return 1
    print(f"manifests: {len(renders)} renders ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
