# Interlock as an image FROM scratch: the static binary, CA certificates,
# and a non-root user. No build stage: the binary is built on the host, so
# the image builds without any registry (make image does all of it):
#
#   CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o build/image/interlock ./cmd/interlock
#   cp /etc/ssl/certs/ca-certificates.crt build/image/
#   docker build -t interlock -f Dockerfile build/image
#
# The user is nobody (65534). To watch the local engine through its socket,
# give the container the socket's group:
#   docker run --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v /var/run/docker.sock:/var/run/docker.sock -p 80:8080 interlock
# To watch a manager over TLS, mount the client certificates at /certs:
#   docker run -e DOCKER_HOST=tcp://manager:2376 -e DOCKER_TLS_VERIFY=1 \
#     -e DOCKER_CERT_PATH=/certs -v /path/to/certs:/certs:ro -p 80:8080 interlock
#
# The state directory (--state-dir, default /var/lib/interlock: the saved
# table, proxy configurations, ACME files) belongs to nobody in the image,
# so a named volume mounted there starts out writable by it (Docker copies
# the directory's owner into a new volume) and survives a restart.
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY interlock /interlock
COPY --chown=65534:65534 state /var/lib/interlock
USER 65534:65534
# Proxy (HTTP, HTTPS) and the API with the dashboard and /metrics.
EXPOSE 8080 8443 8081
ENTRYPOINT ["/interlock"]
# Inside a container the API must listen beyond loopback to be published.
CMD ["run", "--api-addr", ":8081"]
