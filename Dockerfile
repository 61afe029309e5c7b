# Meterway gateway image: slim Python base, non-root user, `meterway serve`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY pricing ./pricing
COPY storage ./storage
COPY metrics ./metrics
COPY governance ./governance
COPY reconcile ./reconcile
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 meterway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY config.yaml ./config.yaml
COPY pricing/book ./pricing/book
RUN mkdir -p /app/data && chown -R meterway:meterway /app
USER meterway
ENV MW_HOST=0.0.0.0
EXPOSE 8080
VOLUME ["/app/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status == 200 else 1)"
CMD ["meterway", "serve", "--config", "/app/config.yaml"]
