# querylog: build, run and test the custom CoreDNS and the querylog command.
GO ?= go

.PHONY: run build test vet unit rules bench-short image image-context image-build

# Build the custom CoreDNS and serve Corefile.example on 127.0.0.1:1053 (Ctrl-C to stop).
run: build
	./coredns -conf Corefile.example

# The custom CoreDNS (./coredns) and the command that reads its databases (./querylog). go mod
# download fetches the tests' modules too, so that make test needs no further download.
# querylog --version names the commit that go build stamps: -buildvcs=auto asks for the stamp
# where GOFLAGS turns it off; where git cannot tell the state, build without it.
build:
	$(GO) mod download
	$(GO) build -o coredns ./cmd/coredns
	$(GO) build -buildvcs=auto -o querylog ./cmd/querylog 2>/dev/null || $(GO) build -buildvcs=false -o querylog ./cmd/querylog

# The container image (Containerfile, deploy/image): static binaries built on this host (no base
# image is pulled), then podman or docker, whichever is installed. IMAGE names it; STAGE is the
# build context, which image-context fills and image-build reads (the tests call them apart, to
# build the binaries once).
IMAGE ?= querylog/coredns:dev
STAGE ?= deploy/image/stage
CONTAINER ?= $(shell command -v podman || command -v docker)
STATIC = CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w'

image: image-context image-build

image-context:
	rm -rf $(STAGE) && mkdir -p $(STAGE)/dirs/etc/coredns $(STAGE)/dirs/var/lib $(STAGE)/state/querylog
	chmod -R 755 $(STAGE)/dirs && chmod 750 $(STAGE)/state/querylog
	$(STATIC) -o $(STAGE)/coredns ./cmd/coredns
	$(STATIC) -o $(STAGE)/querylog ./cmd/querylog
	cp /etc/ssl/certs/ca-certificates.crt deploy/image/passwd deploy/image/group $(STAGE)/

image-build:
	@test -n "$(CONTAINER)" || (echo "make image needs podman or docker" && exit 1)
	$(CONTAINER) build -t $(IMAGE) -f Containerfile $(STAGE)

# The whole test suite: what .ci/run runs.
test: vet unit rules bench-short

vet:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt needed" && exit 1)
	$(GO) vet ./...

# The race build of cmd/coredns first: test/'s TestMain builds it again under go test's timeout,
# which compiling client-go and the Kubernetes API types with -race can take minutes of. The
# timeout is a bound for a hung test, not a speed target: with both cores busy the plugin's
# package alone took 754 s under the race detector (2026-12-05).
# cmd/querylog again without -race: its tests that run CoreDNS with the kubernetes plugin
# in-process skip under it (a data race of the plugin's on klog's logger between instances).
unit:
	$(GO) build -race -o /dev/null ./cmd/coredns
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -count=1 -timeout 30m ./cmd/querylog

rules:
	promtool check rules deploy/prometheus/querylog.rules.yml
	promtool test rules deploy/prometheus/querylog.rules.test.yml

# A few seconds of dnsperf load against the real build; fails unless rows = completed, no drops.
bench-short:
	$(GO) run ./bench/loadtest -scenario rate -short
