# One image for every service: `python -m shared.run <pkg>.service` (= nameko run --config config.yaml, JSON logs)
FROM python:3.11-slim AS build
WORKDIR /app
# the locked runtime dependencies only (requirements.lock: hashes checked; no SecantusDB,
# no test tools), then the project itself for its `workforce` CLI script
COPY requirements.lock ./
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . /src
RUN /venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation /src

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /venv /venv
WORKDIR /app
COPY --chown=app:app . .
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore::DeprecationWarning
USER app
# SERVICE is the package: auth_svc, org_svc, employee_svc, team_svc, task_svc, notify_svc, gateway_svc
CMD ["sh", "-c", "exec python -m shared.run ${SERVICE}.service"]
