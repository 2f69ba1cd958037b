# syntax=docker/dockerfile:1
# orderhost's image: one binary (the built-in components are compiled into it) on a small
# Debian runtime, run as an unprivileged user. `docker compose build` builds it; see
# compose.yaml and README "Deploy".

# --- build: the pinned toolchain (rust-toolchain.toml) plus the guest target -------------
FROM rust:1.95.0-slim-bookworm AS build
# host/build.rs builds components/ for wasm32-wasip2 and would add the target itself;
# adding it here keeps it in a cached layer.
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binary is copied
# out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p orderhost \
    && install -D -m 0755 target/release/orderhost /out/orderhost

# --- runtime ------------------------------------------------------------------------------
FROM debian:bookworm-slim
# curl is the HEALTHCHECK's probe (the binary has no TLS and needs no CA certificates;
# ca-certificates comes with curl).
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 orderhost \
    && useradd --system --uid 10001 --gid orderhost --home-dir /var/lib/orderhost \
       --create-home --shell /usr/sbin/nologin orderhost
COPY --from=build /out/orderhost /usr/local/bin/orderhost
# The bootstrap bindings (TOML, optional .wasm files); a mounted folder replaces them.
COPY policies /etc/orderhost/policies
WORKDIR /var/lib/orderhost
USER orderhost:orderhost
# Container defaults: listen on every interface, JSON logs on stdout only.
ENV ORDERHOST_BIND=0.0.0.0:8000 \
    ORDERHOST_LOG_FORMAT=json \
    ORDERHOST_LOG_DIR= \
    ORDERHOST_POLICIES_DIR=/etc/orderhost/policies
EXPOSE 8000
# Ready = migrations ran and the database and Redis answer (503 otherwise).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8000/health/ready || exit 1
ENTRYPOINT ["orderhost"]
CMD ["serve"]
