# statehold: multi-stage build, static-ish binary on a slim Debian base.
FROM rust:1-bookworm AS build
WORKDIR /src
# The commit for statehold_build_info (the context has no .git):
#   docker build --build-arg STATEHOLD_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG STATEHOLD_COMMIT=unknown
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY demo-bot ./demo-bot
RUN cargo build --release --locked --bin statehold \
 && strip target/release/statehold

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/statehold statehold \
 && mkdir -p /var/lib/statehold/data /etc/statehold \
 && chown -R statehold /var/lib/statehold
COPY --from=build /src/target/release/statehold /usr/local/bin/statehold
COPY config.toml /etc/statehold/config.toml
USER statehold
WORKDIR /var/lib/statehold
ENV STATEHOLD_CONFIG=/etc/statehold/config.toml
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/statehold"]
CMD ["serve"]
