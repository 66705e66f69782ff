# A static boxoffice binary on a minimal image (no shell: health checks run `/boxoffice health URL`).
# docker-compose.yml runs one container per part next to PostgreSQL
# and Apache Kafka; on a machine without Docker, `make run` does the same with no containers.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /boxoffice .

FROM gcr.io/distroless/static-debian12
COPY --from=build /boxoffice /boxoffice
# Goroutines start on the smallest stack: see RUNTIME_GODEBUG in the Makefile.
ENV GODEBUG=adaptivestackstart=0
EXPOSE 8080 9100
ENTRYPOINT ["/boxoffice"]
