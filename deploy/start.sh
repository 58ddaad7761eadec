#!/usr/bin/env bash
# Start the Space: Streamlit app + Gradio demos on loopback, nginx on the public port 7860.
set -euo pipefail
cd "$(dirname "$0")/.."
export CVDEMO_GRADIO_BASE_URL="${CVDEMO_GRADIO_BASE_URL:-/gradio}"
# Classroom warm start: the server loads the models and precomputes the default samples at start.
export CVDEMO_WARM_START="${CVDEMO_WARM_START:-1}"

# Weights not baked into the image are fetched on first start into the persistent cache.
python -m cvdemo.weights fetch yolov8n yolov8n-seg efficientnet_lite0 mobileclip_s0 || true

streamlit run app.py --server.port 8501 --server.address 127.0.0.1 --server.headless true \
    --server.enableCORS false --server.enableXsrfProtection false &
python -m cvdemo.share all --mount /gradio --host 127.0.0.1 --port 7861 &
exec nginx -c "$PWD/deploy/nginx.conf" -g "daemon off;"
