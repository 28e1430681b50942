# berth — run `make help` for the targets.
# On a fresh Debian/Ubuntu host use `sudo hack/make TARGET`: it installs make,
# a Go toolchain and the Debian packages TARGET needs, then runs it.

SHELL       := /bin/sh
GO          ?= go
PREFIX      ?= /usr/local
BIN         := bin/berth
# The per-task monitor and container init, installed next to berth.
SHIM        := bin/berth-shim
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# cgo for libcontainer's nsenter; the seccomp tag links libseccomp.
TAGS        := seccomp netgo osusergo
GOFLAGS_B   := -tags '$(TAGS)' -trimpath -buildvcs=false
# Static, so the binary also serves as --init inside any image (no libc there).
LDFLAGS     := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X github.com/berth-dev/berth/runtime.Build=$(VERSION) -linkmode external -extldflags "-static"
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Whole suite; packages may run in parallel, so tests name host-global
# things (cgroups, ports, bridges) uniquely per run.
TESTFLAGS   ?= -count=1 -timeout 15m
export CGO_ENABLED := 1

.PHONY: help build test demo bench lint fmt vet install clean deps

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/berth and bin/berth-shim (cgo, seccomp)
	$(GO) build $(GOFLAGS_B) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/berth
	$(GO) build $(GOFLAGS_B) -ldflags '$(LDFLAGS)' -o $(SHIM) ./cmd/berth-shim

deps: ## install the Debian packages and Go toolchain the tests need (root)
	sh hack/deps.sh test

test: deps ## run the whole test suite (root; CI=true makes missing prerequisites fail)
	@[ "$$(id -u)" = 0 ] || { echo "make test: the suite drives real containers and needs root: sudo make test" >&2; exit 1; }
	$(GO) build $(GOFLAGS_B) ./...
	$(GO) vet -tags '$(TAGS)' ./...
	CI=$${CI:-true} $(GO) test -tags '$(TAGS)' -buildvcs=false $(TESTFLAGS) ./... ./testdata/apps/testapp

demo: ## build berth and show what it runs on this host (root)
	sh hack/deps.sh build
	@$(MAKE) --no-print-directory build
	sh hack/demo.sh $(BIN)

bench: build ## run benchmarks: go test -bench plus the side-by-side scripts in bench/
	$(GO) test -tags '$(TAGS)' -run '^$$' -bench . -benchmem ./...
	@for s in bench/*.sh; do [ -f "$$s" ] || continue; echo "== $$s"; sh "$$s" $(BIN) || exit 1; done

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags '$(TAGS)' ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) vet ./...
	$(GO) run $(STATICCHECK) -tags '$(TAGS)' ./...

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

install: build ## install berth and berth-shim to $(PREFIX)/bin
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/berth
	install -D -m 0755 $(SHIM) $(DESTDIR)$(PREFIX)/bin/berth-shim

clean: ## remove build output
	rm -rf bin
