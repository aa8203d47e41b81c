# One image for every Callboard service; the command picks which one runs:
#   docker run IMAGE ingest --host 0.0.0.0 --port 8001
#   docker run IMAGE aggregator
#   docker run IMAGE api --host 0.0.0.0 --port 8000
#   docker run IMAGE migrate
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject.toml alone, so a code change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY shared ./shared
COPY services ./services
COPY migrations ./migrations
# Editable, so the package finds migrations/ beside it in /app.
RUN pip install --no-deps -e . && rm -rf build

RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin callboard
USER callboard

EXPOSE 8000 8001
ENTRYPOINT ["callboard"]
CMD ["--help"]
