# querylog: build, run and test the custom CoreDNS and the querylog command.
GO ?= go

.PHONY: run build test vet unit rules bench-short

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

# The whole test suite: what .ci/run runs.
test: vet unit rules bench-short

vet:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt needed" && exit 1)
	$(GO) vet ./...

# The race build of cmd/coredns first: test/'s TestMain builds it again under go test's timeout,
# which compiling client-go and the Kubernetes API types with -race can take minutes of. The
# timeout is a bound for a hung test, not a speed target: with both cores busy the plugin's
# package alone took 754 s under the race detector (2026-12-05).
unit:
	$(GO) build -race -o /dev/null ./cmd/coredns
	$(GO) test -race -count=1 -timeout 30m ./...

rules:
	promtool check rules deploy/prometheus/querylog.rules.yml
	promtool test rules deploy/prometheus/querylog.rules.test.yml

# A few seconds of dnsperf load against the real build; fails unless rows = completed, no drops.
bench-short:
	$(GO) run ./bench/loadtest -scenario rate -short
