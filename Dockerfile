# crunchbox in a container: every role on the embedded driver by default,
# listening on all interfaces, data in the /data volume.
#
#   docker build -t crunchbox --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
#   docker run --rm -p 8080:8080 -p 4566:4566 -v crunchbox-data:/data crunchbox
#   docker run --rm --no-healthcheck -p 4566:4566 -v ./init:/etc/crunchbox/init:ro crunchbox serve --roles s3,sqs

# --- build -------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, against a stub crate: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/.fingerprint/crunchbox-* target/release/deps/crunchbox-* target/release/deps/libcrunchbox-*

# build.rs records the commit for /__version__; there is no .git in the context.
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=${GIT_COMMIT}
COPY build.rs ./
COPY src ./src
RUN cargo build --release --locked \
 && strip --strip-debug target/release/crunchbox

# --- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim
# curl for the health check; ca-certificates for --driver aws over https.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin crunchbox \
 && mkdir /data \
 && chown crunchbox:crunchbox /data \
 && mkdir -p /etc/crunchbox/init/ready.d /etc/crunchbox/init/shutdown.d
COPY --from=build /src/target/release/crunchbox /usr/local/bin/crunchbox

# Inside a container loopback is useless: listen on every interface. The
# default credentials and upload token then log a loud warning; override
# CRUNCHBOX_AWS_ACCESS_KEY_ID / CRUNCHBOX_AWS_SECRET_ACCESS_KEY and
# CRUNCHBOX_WEB_UPLOAD_TOKENS (and CRUNCHBOX_WEB_PUBLIC_URL) with -e.
# Init hooks (ready.d/, shutdown.d/) come from /etc/crunchbox/init: mount
# your own directory over it.
ENV CRUNCHBOX_DATA_DIR=/data \
    CRUNCHBOX_WEB_LISTEN=0.0.0.0:8080 \
    CRUNCHBOX_AWS_LISTEN=0.0.0.0:4566 \
    CRUNCHBOX_INIT_DIR=/etc/crunchbox/init
VOLUME ["/data"]
WORKDIR /data
USER crunchbox:crunchbox
EXPOSE 8080 4566

# Liveness of the web role, on whatever port CRUNCHBOX_WEB_LISTEN names.
# (A `--roles s3,sqs` container has no web role: run it with --no-healthcheck.)
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${CRUNCHBOX_WEB_LISTEN##*:}/__lbheartbeat__" || exit 1

ENTRYPOINT ["crunchbox"]
CMD ["serve"]
