# The chs image: the worker (default), the score API and page (`api`), the demo (`demo`).
# Built in two stages: a wheel of the whole project, then a slim non-root runtime with only
# the installed wheel. tests/integration/packaging/test_image_install.py installs exactly what this file
# copies, the way this file does, and runs it: keep the COPY lines in the form it reads.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scoring ./scoring
COPY alerts ./alerts
COPY streams ./streams
COPY api ./api
COPY sim ./sim
COPY readmodel ./readmodel
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && useradd --create-home --uid 10001 chs && mkdir /data && chown chs /data
USER chs
WORKDIR /home/chs
ENV CHS_DATA_DIR=/data CHS_WEB_HOST=0.0.0.0 CHS_API_HOST=0.0.0.0
EXPOSE 6066 8080
ENTRYPOINT ["chs"]
CMD ["worker"]
