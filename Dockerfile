# statehold's image: built on the Rust image, run on distroless (glibc,
# CA certificates for rediss:// to a managed Redis, no shell, no package
# manager), as the numeric non-root user 65532. Dynamically linked against
# glibc; both stages are Debian 12 (bookworm), so the libraries match.
#
# Base images are pinned by digest: a rebuild fetches the bytes that were
# reviewed. To move to newer ones, look the digests up and edit both lines:
#   docker buildx imagetools inspect rust:1.91-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
#
# Build (the context has no .git; pass the commit for statehold_build_info):
#   docker build --build-arg STATEHOLD_COMMIT=$(git rev-parse --short=12 HEAD) -t statehold .
# Run with your config (its routes verified: on a non-loopback listener an
# unverified route is refused) and settings by environment
# (STATEHOLD_<SECTION>__<KEY>; see the README):
#   docker run -p 8080:8080 -v $PWD/config.toml:/etc/statehold/config.toml:ro \
#     -e STATEHOLD_SERVER__LISTEN=0.0.0.0:8080 -e STATEHOLD_UPSTREAM__URL=http://bot:8000 \
#     -e TELEGRAM_SECRET_TOKEN=... statehold
#
# No HEALTHCHECK: the orchestrator probes /healthz and /readyz itself.

FROM rust:1.91-bookworm@sha256:c1e5f19e773b7878c3f7a805dd00a495e747acbdc76fb2337a4ebf0418896b33 AS build
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the
# manifests or the lock file change, not on every source edit.
COPY Cargo.toml Cargo.lock build.rs ./
COPY demo-bot/Cargo.toml demo-bot/Cargo.toml
RUN mkdir -p src benches demo-bot/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/hot_paths.rs \
 && echo 'fn main() {}' > demo-bot/src/main.rs \
 && cargo build --profile dist --locked --bin statehold \
 && rm -rf src benches demo-bot/src
COPY src ./src
COPY benches ./benches
COPY demo-bot ./demo-bot
ARG STATEHOLD_COMMIT=unknown
# The sources are older than the placeholder build: touch them so that
# cargo rebuilds statehold itself (and build.rs reads the commit).
RUN touch src/main.rs src/lib.rs build.rs \
 && cargo build --profile dist --locked --bin statehold \
 && strip target/dist/statehold \
 && mkdir -p /data

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /src/target/dist/statehold /usr/local/bin/statehold
COPY --from=build --chown=65532:65532 /data /var/lib/statehold/data
COPY config.toml /etc/statehold/config.toml
USER 65532:65532
WORKDIR /var/lib/statehold
ENV STATEHOLD_CONFIG=/etc/statehold/config.toml
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/statehold"]
CMD ["serve"]
