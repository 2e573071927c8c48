# ciphervec service image: the package plus its migrations, served by `ciphervec serve`.
FROM python:3.11-slim
WORKDIR /srv/ciphervec
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir -e . && useradd --system ciphervec
USER ciphervec
EXPOSE 8000
CMD ["ciphervec", "serve", "--host", "0.0.0.0", "--port", "8000"]
