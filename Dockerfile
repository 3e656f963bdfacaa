# A fusionrec worker image (also runs `fusionrec dashboard`, `fusionrec replay`, `fusionrec lag`).
# Build: docker build -t fusionrec .   — the pinned dependencies come from constraints.txt.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    FUSIONREC_WEB_HOST=0.0.0.0 \
    FUSIONREC_WEB_PORT=6066 \
    FUSIONREC_DATA_DIR=/var/lib/fusionrec/worker \
    FUSIONREC_VECTOR_CACHE_DIR=/var/lib/fusionrec/vectors

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY fusionrec ./fusionrec
COPY stream ./stream
COPY encoder ./encoder
COPY index ./index
RUN pip install -c constraints.txt . \
 && useradd --system --create-home --home-dir /var/lib/fusionrec fusionrec
COPY data ./data

USER fusionrec
VOLUME ["/var/lib/fusionrec"]
EXPOSE 6066
# Readiness, not liveness: GET /ready answers 503 (urlopen raises, the check fails) until the catalog is
# loaded, the worker's partitions are assigned and no person state is being restored; /health answers
# 200 whenever the process does. A big catalog takes a while to encode on a CPU: raise --start-period.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('FUSIONREC_WEB_PORT', '6066'), timeout=2)"
CMD ["fusionrec", "worker", "--loglevel", "info"]
