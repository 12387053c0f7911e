# The broker image for Fargate (built by `cdk deploy` through ContainerImage.from_asset).
# Minimal on purpose: the package and its runtime dependencies, a non-root user, one command.
FROM public.ecr.aws/docker/library/python:3.11-slim

WORKDIR /app
COPY pyproject.toml ./
COPY broker_service ./broker_service
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --home-dir /app broker

USER broker
# Brokers on Fargate keep no durable local state: data_dir is scratch only.
ENV BROKER_HOST=0.0.0.0 \
    BROKER_DATA_DIR=/tmp/broker \
    PYTHONUNBUFFERED=1
EXPOSE 9092 9464
CMD ["python", "-m", "broker_service", "serve"]
