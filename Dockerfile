# ferry: one image for every component (`ferry receiver`, `dispatcher`,
# `controller`, `standalone`, `event-display`, `send`).
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ferry

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 ferry
COPY --from=build /src/target/release/ferry /usr/local/bin/ferry
USER 65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["--help"]
