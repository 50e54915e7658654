# The Teilhabe image (worker, migrate, generate, ...): docker-compose.yml builds it.
#   docker build -t teilhabe:0.1.0 --build-arg UID=$(id -u) --build-arg GID=$(id -g) .
# The process runs as UID:GID (default 1000:1000) so that it can read the pseudonymisation key
# that docker compose bind-mounts from the host with the host file's owner and mode 0600.

# --- build: wheels of the project and its dependencies (compilers stay in this stage) ---------
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY pipeline pipeline
COPY agents agents
COPY schemas schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: no compilers, no dev or test dependencies, non-root ----------------------------
FROM python:3.11-slim-bookworm
ARG UID=1000
ARG GID=1000
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TEILHABE_DATA_DIR=/var/lib/teilhabe \
    TEILHABE_METRICS_HOST=0.0.0.0 \
    TEILHABE_METRICS_PORT=9464
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels teilhabe \
    && rm -rf /wheels \
    && (getent group "${GID}" >/dev/null || groupadd --gid "${GID}" teilhabe) \
    && (getent passwd "${UID}" >/dev/null || useradd --uid "${UID}" --gid "${GID}" \
        --no-create-home --home-dir /var/lib/teilhabe --shell /usr/sbin/nologin teilhabe) \
    && install -d -o "${UID}" -g "${GID}" -m 0700 /var/lib/teilhabe
# No .env in the image (.dockerignore): configuration comes from the environment only.
WORKDIR /var/lib/teilhabe
USER ${UID}:${GID}
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=5)"]
ENTRYPOINT ["teilhabe"]
CMD ["worker"]
