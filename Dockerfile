# One image for every service: `python -m shared.run <pkg>.service` (= nameko run --config config.yaml, JSON logs)
FROM python:3.11-slim AS build
WORKDIR /app
COPY requirements.in constraints.txt ./
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir -c constraints.txt -r requirements.in

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /venv /venv
WORKDIR /app
COPY --chown=app:app . .
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore::DeprecationWarning
USER app
# SERVICE is the package: auth_svc, org_svc, employee_svc, team_svc, task_svc, notify_svc, gateway_svc
CMD ["sh", "-c", "exec python -m shared.run ${SERVICE}.service"]
