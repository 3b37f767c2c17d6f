# flowauth's image: a static binary on an empty base, run as a non-root user.
#   make image IMG=flowauth/flowauth:dev
# Build stage: the newest Go release this project may use (go.mod needs 1.26): its standard
# library has the security fixes that hack/vulncheck.sh checks for in this very binary.
FROM golang:1.27.3 AS build
WORKDIR /src
# Dependencies first, so code changes reuse the module layer.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/webhook ./cmd/webhook

# Final stage: nothing but the binary. No shell, no package manager, no CA bundle (the webhook
# makes no outbound TLS calls except to the API server, whose CA comes with the service account).
FROM scratch
COPY --from=build /out/webhook /webhook
# 65532 is the conventional "nonroot" uid; the chart also sets runAsNonRoot and this uid.
USER 65532:65532
EXPOSE 9443 8080 8081
ENTRYPOINT ["/webhook"]
