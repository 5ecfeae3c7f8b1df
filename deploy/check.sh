#!/usr/bin/env bash
# Checks everything in deploy/ offline (.ci/run calls it; deploy/README.md, "Checks"):
#   1. the Dockerfile copies binaries the workspace builds, under the names it builds;
#   2. every kustomization renders (`kubectl kustomize`), every object validates against
#      the Kubernetes schemas (kubernetes-validate from PyPI, strict), every config a
#      manifest embeds passes `floodgate --check` / `floodgate-control --check` with the
#      container's own command line (deploy/check/manifests.py);
#   3. the dashboard names only metrics the code exports;
#   4. the systemd units pass `systemd-analyze verify`, and the config the gateway unit
#      expects passes `floodgate --check`.
# Needs the debug binaries (built here when missing). Without kubectl, step 2 is
# skipped with a note (Debian's kubernetes-client is 1.20: its kustomize is too old for
# these kustomizations); without systemd-analyze, step 4 likewise.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
BIN=$(realpath -m "${FLOODGATE_BIN_DIR:-target/debug}")
VENV=$(realpath -m "${DEPLOY_CHECK_VENV:-target/deploy-check-venv}")
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
status=0
echo "== deploy/check.sh (Dockerfile, Kubernetes manifests, systemd units)"

for b in floodgate floodgate-control healthcode-app; do
  if [ ! -x "$BIN/$b" ]; then
    cargo build --locked -p floodgate -p floodgate-control -p floodgate-loadtest \
      --bin floodgate --bin floodgate-control --bin healthcode-app
    break
  fi
done

echo "-- Dockerfile: copied binaries are [[bin]] targets of the workspace and are built"
bins=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json,sys; print(" ".join(t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "bin" in t["kind"]))')
copied=$(sed -nE 's|^COPY --from=builder /src/target/release/([^ ]+) /usr/local/bin/\1$|\1|p' deploy/Dockerfile)
built=$(grep -oE -- '--bin [a-z-]+' deploy/Dockerfile | cut -d' ' -f2)
[ -n "$copied" ] || { echo "FAIL no COPY of a binary found in deploy/Dockerfile"; status=1; }
for c in $copied; do
  case " $bins " in *" $c "*) ;; *) echo "FAIL deploy/Dockerfile copies $c: not a [[bin]] ($bins)"; status=1 ;; esac
  case " $(echo $built) " in *" $c "*) ;; *) echo "FAIL deploy/Dockerfile copies $c but does not build it (--bin)"; status=1 ;; esac
done
[ $status = 0 ] && echo "ok: $(echo $copied)"

echo "-- dashboard: metric names the code exports"
python3 - <<'PY' || status=1
import json, re, subprocess, sys
dash = json.load(open("deploy/k8s/base/monitoring/floodgate-dashboard.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"floodgate_[a-z_]+", e)}
code = subprocess.run(["grep", "-rhoE", '"floodgate_[a-z_]+"', "proxy/src", "control/src"],
                      capture_output=True, text=True).stdout
exported = {m.strip('"') for m in code.split()}
missing = sorted(used - exported)
if missing:
    print("FAIL dashboard names metrics no code exports:", ", ".join(missing)); sys.exit(1)
print(f"ok: {len(used)} metrics in {len(exprs)} queries")
PY

echo "-- Kubernetes: render, validate, --check the embedded configs"
if ! command -v kubectl >/dev/null 2>&1; then
  echo "SKIP: kubectl not found (the manifests were not rendered or validated)"
else
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    python3 -m venv "$VENV"
    if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"; then
      echo "FAIL pip install $KUBERNETES_VALIDATE (PyPI) into $VENV"; exit 1
    fi
  fi
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  renders=()
  while IFS= read -r k; do
    dir=$(dirname "$k")
    grep -q '^kind: Component' "$k" && continue   # rendered through the overlays using it
    file="$out/$(echo "${dir#deploy/k8s/}" | tr / _).yaml"
    if kubectl kustomize "$dir" >"$file" 2>"$file.err"; then
      renders+=("$file")
    else
      echo "FAIL kubectl kustomize $dir:"; cat "$file.err"; status=1
    fi
  done < <(find deploy/k8s -name kustomization.yaml | sort)
  echo "rendered ${#renders[@]} kustomizations"
  (cd "$out" && "$VENV/bin/python" "$OLDPWD/deploy/check/manifests.py" "$BIN" \
      "$OLDPWD/deploy/Dockerfile" "${renders[@]##*/}") || status=1
fi

echo "-- systemd units"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze not found (the units were not verified)"
else
  units=$(mktemp -d)
  # verify wants ExecStart's program to exist: point the units at the built binaries.
  for u in deploy/systemd/*.service; do
    sed -e "s|/usr/local/bin/floodgate-control|$BIN/floodgate-control|g" \
        -e "s|/usr/local/bin/floodgate |$BIN/floodgate |g" "$u" >"$units/$(basename "$u")"
  done
  if (cd "$units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no ./*.service) 2>&1 |
      grep -v -e 'Failed to connect to' -e 'is not a unit file path' | grep . ; then
    echo "FAIL systemd-analyze verify (above)"; status=1
  else
    echo "ok: $(ls deploy/systemd/*.service | xargs -n1 basename | tr '\n' ' ')"
  fi
  rm -rf "$units"
fi
# floodgate-gateway.service runs an installed configs/gateway.yaml.
if "$BIN/floodgate" --config configs/gateway.yaml --check >/dev/null; then
  echo "ok: floodgate --config configs/gateway.yaml --check (the gateway unit's config)"
else
  "$BIN/floodgate" --config configs/gateway.yaml --check || true; status=1
fi

if [ $status = 0 ]; then echo "deploy: all checks passed"; else echo "deploy: checks FAILED"; fi
exit $status
