#!/usr/bin/env bash
# Apply the hotline manifests in the order they need:
#   namespace, config, service account -> (the Secret must already exist) -> init Job, wait until Complete
#   -> worker Deployments, Services, PodDisruptionBudgets -> PodMonitor if the Prometheus Operator is installed.
# Usage: deploy/kubernetes/apply.sh [image]   e.g. registry.example.cn/hotline/hotline-dispatch:0.1.0
set -euo pipefail
cd "$(dirname "$0")"
ns=hotline
image=${1:-}

render() {  # print a manifest, with the image replaced when one was given
  if [ -n "$image" ]; then
    sed "s|registry.example.invalid/hotline/hotline-dispatch:0.1.0|${image}|g" "$1"
  else
    cat "$1"
  fi
}

kubectl apply -f 00-namespace.yaml -f 10-configmap.yaml -f 12-serviceaccount.yaml
if ! kubectl -n "$ns" get secret hotline-db >/dev/null 2>&1; then
  echo "error: Secret $ns/hotline-db is missing; create it first (see examples/secret.example.yaml)" >&2
  exit 1
fi

# The Job's pod template is immutable: replace last release's Job.
kubectl -n "$ns" delete job hotline-init --ignore-not-found --wait=true
render 20-init-job.yaml | kubectl apply -f -
echo "waiting for job/hotline-init (topics create, then db migrate) ..."
for _ in $(seq 1 180); do
  succeeded=$(kubectl -n "$ns" get job hotline-init -o jsonpath='{.status.succeeded}')
  failed=$(kubectl -n "$ns" get job hotline-init -o jsonpath='{.status.conditions[?(@.type=="Failed")].status}')
  if [ "${succeeded:-0}" -ge 1 ]; then break; fi
  if [ "$failed" = "True" ]; then
    echo "error: job/hotline-init failed; the workers were not applied" >&2
    kubectl -n "$ns" logs job/hotline-init --all-containers --tail=50 >&2 || true
    exit 1
  fi
  sleep 5
done
if [ "${succeeded:-0}" -lt 1 ]; then echo "error: job/hotline-init did not complete in 15 minutes" >&2; exit 1; fi

for f in 30-intake.yaml 31-router.yaml 32-sla.yaml; do render "$f" | kubectl apply -f -; done
if kubectl api-resources --api-group=monitoring.coreos.com -o name 2>/dev/null | grep -q '^podmonitors'; then
  kubectl apply -f 60-podmonitor.yaml
else
  echo "no Prometheus Operator: skipping 60-podmonitor.yaml (pods carry prometheus.io/* annotations)"
fi
for d in hotline-intake hotline-router hotline-sla; do kubectl -n "$ns" rollout status "deploy/$d" --timeout=5m; done
