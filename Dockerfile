# The OCR function on PaddleOCR-VL, one GPU. The base image brings Python 3.10, paddlepaddle-gpu, paddleocr
# and (the -offline tags) the models in /home/paddleocr/.paddlex/official_models; this adds the function
# and its small requirements only. Other GPUs and a shared vLLM server: docs/gpu.md.
#   docker build -t ocr-function:gpu .
#   docker build --build-arg BASE_IMAGE=ccr-2vdh3abv-pub.cnc.bj.baidubce.com/paddlepaddle/paddleocr-vl:latest-nvidia-gpu-offline -t ocr-function:gpu .
ARG BASE_IMAGE=ccr-2vdh3abv-pub.cnc.bj.baidubce.com/paddlepaddle/paddleocr-vl:latest-gpu-sm120-offline
FROM ${BASE_IMAGE}

# The base image ends as its user paddleocr (uid 1000); installing into its Python needs root.
USER 0:0
WORKDIR /app
COPY requirements.txt ./
RUN python -m pip install --no-cache-dir -r requirements.txt
COPY handler.py ./
COPY function/ function/
# Fail the build, not the first request, if the function cannot be imported on the base image's Python
# (no engine is loaded by this: models load in the serving process only).
RUN OCR_STORE=file:///tmp/import-check python -c "import handler" \
    && rm -rf /tmp/import-check \
    && mkdir -p /app/output \
    && chown 1000:1000 /app/output

# The base image's non-root user (uid 1000, HOME /home/paddleocr where the models are); numeric so that
# Kubernetes' runAsNonRoot can check it.
USER 1000:1000
# One worker: one model copy per GPU, loaded after the fork. The native backend runs one document at a
# time; the other threads answer probes and hold the requests that wait. With a vLLM server raise
# PADDLEOCR_VL_CONCURRENCY. `python -m function serve` sets THREADS to OCR_CONCURRENCY + OCR_QUEUE_SIZE + 2
# unless it is given, so that admission, not the server, decides who waits.
# glibc's malloc with 2 arenas, not the CPU image's tcmalloc: tcmalloc is measured with the CPU engines
# only (BENCHMARKS.md), not yet with Paddle on a GPU.
ENV OCR_ENGINE=paddleocr-vl \
    WORKERS=1 \
    PORT=8080 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK=True
EXPOSE 8080
# Python, not curl: every PaddleOCR-VL image runs Python, not every one has curl. Ready means the model
# is loaded; loading takes minutes on a cold node.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health/ready', timeout=4)"]
# functions-framework's app and gunicorn, with SIGTERM draining for OCR_DRAIN_SEC (function/lifecycle.py).
CMD ["python", "-m", "function", "serve"]
