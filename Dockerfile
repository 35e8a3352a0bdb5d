# The `soiree` command in an image: `docker build -t soiree .` then `docker run soiree --help`.
# Kafka and Redis come from their own images (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The build context is only pyproject.toml, README.md and stream/ (see .dockerignore).
COPY . /tmp/soiree
RUN pip install /tmp/soiree \
    && rm -rf /tmp/soiree \
    && useradd --create-home --uid 10001 soiree

# Faust keeps its local state (soiree-data/) in the working directory: a writable one.
USER soiree
WORKDIR /home/soiree

ENTRYPOINT ["soiree"]
CMD ["--help"]
