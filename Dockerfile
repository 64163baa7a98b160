# One image for every planloop process in docker-compose.yml: the worker (the default command), the HTTP API
# (`planloop api`) and the migrations (`planloop migrate`). Configure it with PLANLOOP_* variables.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what `pip install .` needs: the project metadata (its readme included) and the packages it installs
# ([tool.setuptools.packages.find] in pyproject.toml), migrations with them.
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY eventstore ./eventstore
COPY workflows ./workflows
COPY activities ./activities
COPY planloop ./planloop
RUN pip install . && cd / && rm -rf /src

# Run as an unprivileged user; its home holds nothing the containers need to keep.
RUN useradd --create-home --uid 10001 planloop
# The folder of the audit signing key: a named volume in docker-compose.yml mounts over it and takes its owner.
RUN mkdir -p /var/lib/planloop/keys && chown planloop /var/lib/planloop/keys && chmod 700 /var/lib/planloop/keys
USER planloop
WORKDIR /home/planloop

# The worker needs PLANLOOP_DATABASE_URL and PLANLOOP_TEMPORAL_ADDRESS; it stops cleanly on SIGTERM.
CMD ["planloop", "worker"]
