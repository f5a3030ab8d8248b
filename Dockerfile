# The worker and the starter in one small image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./worker ./starter

FROM alpine:3.22
# tzdata renders windows in each instance's zone; ca-certificates reach SendGrid.
RUN apk add --no-cache ca-certificates tzdata
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
CMD ["worker"]
