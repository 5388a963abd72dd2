# The desk's code and its pinned runtime dependencies, for running stages as services
# (docker-compose.yml, profile scale-out): `python -m pipeline run --stage NAME`.
FROM python:3.11-slim-bookworm
WORKDIR /desk
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
ENV DATA_DIR=/data
RUN useradd --system --create-home desk && mkdir -p /data && chown desk /data
USER desk
CMD ["python", "-m", "pipeline", "run"]
