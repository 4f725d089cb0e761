# hoist: a static (musl) binary in an empty image, with the CA bundle for
# HTTPS and SMTP notifications: the image `scripts/package-image.sh` builds
# where the musl target is installed (same layout).
#
# Build:  docker build -t hoist .
# (On a machine without registry access, `scripts/package-image.sh` packages
# a locally built binary FROM scratch instead.)

FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
# Tests are not built here; an empty integration target keeps cargo happy.
RUN mkdir -p tests && echo > tests/tests.rs \
 && cargo build --release --locked --bin hoist \
 && mkdir -p /rootfs/usr/local/bin /rootfs/var/lib/hoist /rootfs/tmp /rootfs/etc/ssl/certs \
 && cp target/release/hoist /rootfs/usr/local/bin/hoist \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

FROM scratch
COPY --from=build /rootfs/ /
ENV HOIST_LISTEN=0.0.0.0:8080 HOIST_STATE_DIR=/var/lib/hoist SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8080
VOLUME /var/lib/hoist
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["/usr/local/bin/hoist", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/hoist"]
CMD ["run"]
