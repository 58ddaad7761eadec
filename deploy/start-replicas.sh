#!/usr/bin/env bash
# Several Streamlit replicas of cvdemo on loopback ports 8501..8500+N, behind nginx on port 8080
# (deploy/nginx-replicas.conf lists 4 replicas: keep N and its upstream block in step).
# With CVDEMO_INFERENCE_URL set (python -m cvdemo.serve on this or another machine), the replicas send the
# networks' work there; without it each replica runs its own models.
#
#     deploy/start-replicas.sh 4
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-4}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
for i in $(seq 1 "$N"); do
    streamlit run app.py --server.port "$((8500 + i))" --server.address 127.0.0.1 --server.headless true \
        --server.fileWatcherType none &
    pids+=("$!")
done
nginx -c "$PWD/deploy/nginx-replicas.conf" -g "daemon off;" &
pids+=("$!")
wait -n "${pids[@]}"
