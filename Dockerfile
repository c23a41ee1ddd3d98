# flaredock: a small, non-root runtime image.
#   docker build -t flaredock .
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so that source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked && strip target/release/flaredock

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/flaredock /usr/local/bin/flaredock
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flaredock"]
CMD ["run"]
