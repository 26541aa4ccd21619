# Okta password-import gateway. Config and secrets are mounted at run time, never baked in:
#   docker run -p 8080:8080 -v $PWD/config.yaml:/etc/gateway/config.yaml:ro \
#     -e OKTA_HOOK_SECRET -e AZURE_TENANT_ID -e AZURE_CLIENT_ID -e AZURE_CLIENT_SECRET gateway
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
COPY plugins ./plugins
# python-ldap (ldap sources) builds against libldap; it ships no wheels.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libldap-dev libsasl2-dev \
  && rm -rf /var/lib/apt/lists/*
# Every extra: the image serves whatever source types the mounted config names.
RUN pip install --no-cache-dir --prefix=/install '.[all]'

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# libldap's runtime library is libldap-2.5-0 on Debian 12 and libldap2 on Debian 13.
RUN apt-get update && apt-get install -y --no-install-recommends libsasl2-2 \
    $(apt-cache search --names-only '^libldap(-2\.[0-9]+-0|2)$' | cut -d' ' -f1) \
  && rm -rf /var/lib/apt/lists/*
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home gateway
USER 10001
EXPOSE 8080
# Probes /healthz where the mounted config says the gateway listens (scheme from server.tls,
# port, a wildcard host as loopback; a self-signed server.tls certificate is trusted as such).
# Start-up imports take about a second, so the probe gets 2 s of a 5 s timeout.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["gateway", "healthcheck", "--timeout", "2", "-c", "/etc/gateway/config.yaml"]
# Exec form: the gateway is PID 1 and gets SIGTERM directly, so aiohttp drains in-flight calls.
ENTRYPOINT ["gateway", "serve"]
CMD ["-c", "/etc/gateway/config.yaml"]
