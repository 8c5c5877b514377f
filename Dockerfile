# The chs worker image: slim, non-root.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scoring ./scoring
COPY alerts ./alerts
COPY streams ./streams
RUN pip install . && useradd --create-home --uid 10001 chs && mkdir /data && chown chs /data
USER chs
ENV CHS_DATA_DIR=/data CHS_WEB_HOST=0.0.0.0
EXPOSE 6066
ENTRYPOINT ["chs"]
CMD ["worker"]
