# Hugging Face Docker Space: Streamlit app at /, Gradio demos at /gradio/, one public port (7860).
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends nginx libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd -m -u 1000 user
WORKDIR /home/user/app

# CPU wheels of the pinned torch first (PyPI's default Linux build carries CUDA: gigabytes unused here).
COPY requirements.txt .
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir -r requirements.txt

COPY --chown=user . .
USER user
ENV HOME=/home/user \
    GRADIO_ANALYTICS_ENABLED=False \
    CVDEMO_WEIGHTS_DIR=/home/user/weights \
    CVDEMO_CACHE_DIR=/home/user/.cache/cvdemo \
    CVDEMO_GRADIO_BASE_URL=/gradio \
    CVDEMO_WARM_START=1 \
    YOLO_CONFIG_DIR=/home/user/.config/Ultralytics

# Prefetch at build time so the first visitor does not wait; start.sh retries anything missing.
RUN python -m cvdemo.weights fetch yolov8n yolov8n-seg efficientnet_lite0 mobileclip_s0 || true \
    && python -m cvdemo.datasets fetch coco8 hymenoptera_data || true

EXPOSE 7860
CMD ["bash", "deploy/start.sh"]
