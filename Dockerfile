# The broker image for Fargate (built by `cdk deploy` through ContainerImage.from_asset).
# Minimal on purpose: the package and its runtime dependencies in a venv, a non-root user, one
# command. The platform is pinned to the task definition's (X86_64): a build on an arm64
# laptop must not produce an image Fargate x86 cannot run.
# BASE_IMAGE: any Debian-like image with python3 (3.11+) and python3-venv; CI builds with a base
# made offline by mmdebstrap from Debian's packages (tests/stacks/test_image.py).
ARG BASE_IMAGE=public.ecr.aws/docker/library/python:3.11-slim
FROM --platform=linux/amd64 ${BASE_IMAGE}

# PIP_CERT: a CA bundle for pip when the build host reaches PyPI through a TLS-inspecting
# proxy (the test mounts the host's bundle); empty: pip's own.
ARG PIP_CERT=
WORKDIR /app
COPY pyproject.toml ./
COPY broker_service ./broker_service
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && useradd --system --uid 10001 --home-dir /app broker

USER broker
# Brokers on Fargate keep no durable local state: data_dir is scratch only.
ENV PATH=/opt/venv/bin:$PATH \
    BROKER_HOST=0.0.0.0 \
    BROKER_DATA_DIR=/tmp/broker \
    PYTHONUNBUFFERED=1
EXPOSE 9092 9464
CMD ["python", "-m", "broker_service", "serve"]
