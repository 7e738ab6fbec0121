# One image for every role: coordinator, worker and CLI (the entrypoint is
# `zkaudit`, the command picks the role). Built from source:
#   docker build -t zkaudit:latest .
# Without registry access (no base image can be pulled), build the same image
# from a host-compiled binary instead: deploy/build-local-image.sh.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p zkaudit-cli \
    && install -D target/release/zkaudit /out/usr/local/bin/zkaudit

FROM debian:bookworm-slim
COPY --from=build /out/ /
RUN mkdir -p /data /params /keys /work
WORKDIR /work
ENV ZKAUDIT_SRS=/params/kzg_bn254.srs ZKAUDIT_KEYS=/keys ZKAUDIT_DATA=/data
EXPOSE 7700 9100
ENTRYPOINT ["/usr/local/bin/zkaudit"]
CMD ["--help"]
