# pixforge serve in a container (CPU by default).
#
#   docker build -t pixforge-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/models:/models:ro" pixforge-serve          # serves /models/serve.yaml
#   docker run --rm -p 8000:8000 -v "$PWD/runs/demo:/models/demo:ro" pixforge-serve /models/demo
#
# CUDA: the same file with PyTorch's CUDA wheels (they bring the CUDA runtime; the host's driver comes in through
# the NVIDIA container toolkit):
#   docker build -t pixforge-serve:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
#   docker run --rm --gpus all -p 8000:8000 -v "$PWD/models:/models:ro" pixforge-serve:cuda --device cuda
#
# SIGTERM drains (at most 30 s): give `docker stop` longer than its default 10 s, e.g. `docker stop -t 35`.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN pip install --index-url "${TORCH_INDEX}" "torch>=2.2"
COPY pyproject.toml README.md ./
COPY pixforge ./pixforge
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home pixforge

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
ENTRYPOINT ["pixforge", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--config", "/models/serve.yaml"]
