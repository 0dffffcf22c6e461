# One image for web, worker, scheduler and migrate (the command differs); see docker-compose.yml.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app

# Dependencies before the source: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt


# `docker compose --profile tools up`: the RQ dashboard, with the same RQ version as the app.
FROM base AS rq-dashboard
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['tools']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
USER app
EXPOSE 9181
CMD ["rq-dashboard", "--port", "9181"]


# The service (the default target: the last stage).
FROM base AS app
COPY app ./app
COPY migrations ./migrations
COPY wsgi.py worker.py ./
USER app
EXPOSE 8080
# The web server and the RQ worker both finish their work in flight on SIGTERM.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "app.serving"]
