# Kelp build. `make test` is the README's test command and what CI runs.
GO            ?= go
BIN           ?= bin
TOOLS         := $(CURDIR)/.tools
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
PROTOS        := $(wildcard api/*/*.proto)
RUN_DIR       ?= /tmp/kelp
RUN_MNT       ?= /tmp/kelp-mnt
TEST_FLAGS    ?= -race -timeout 15m

.PHONY: build test test-short bench bench-filer bench-fuse-ceiling bench-stat-floor proto proto-check proto-tools run vet clean install

build:
	$(GO) build -o $(BIN)/kelp ./cmd/kelp

# Full suite with the race detector: unit tests, in-process clusters and the
# real binary. Needs root + /dev/fuse for the FUSE tests once they exist.
test: build
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...

test-short:
	$(GO) test -short ./...

# Blob-store benchmark against a fresh one-machine cluster (see docs/benchmarks.md).
bench: build
	bash scripts/bench.sh

# Filer metadata benchmark (gRPC) and bytes per inode (see docs/benchmarks.md).
bench-filer: build
	bash scripts/bench_filer.sh

# fsbench on local disk, go-fuse's loopback and loopback with passthrough
# (and on KELP_MOUNT if set): what FUSE itself costs here (root; see
# docs/benchmarks.md, "The FUSE ceiling").
bench-fuse-ceiling:
	bash scripts/bench_fuse_ceiling.sh

# A stat loop on local disk and on a FUSE filesystem that does no work,
# through go-fuse, /dev/fuse and io_uring (and on KELP_MOUNT if set): the
# fastest a stat after a write can be through FUSE here (root; see
# docs/benchmarks.md, "The stat floor").
bench-stat-floor:
	bash scripts/bench_stat_floor.sh

proto-tools:
	@mkdir -p $(TOOLS)
	@test -x $(TOOLS)/protoc-gen-go && $(TOOLS)/protoc-gen-go --version | grep -q $(PROTOC_GEN_GO_VERSION) || \
		GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@test -x $(TOOLS)/protoc-gen-go-grpc && $(TOOLS)/protoc-gen-go-grpc --version | grep -q $(patsubst v%,%,$(PROTOC_GEN_GO_GRPC_VERSION)) || \
		GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler" >&2; exit 1; }

# Regenerate the committed Go code from api/*/*.proto.
proto: proto-tools
	PATH=$(TOOLS):$$PATH protoc -I . --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative $(PROTOS)

# Fails when the committed generated code differs from what the protos give.
proto-check: proto-tools
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	PATH=$(TOOLS):$$PATH protoc -I . --go_out=$$tmp --go_opt=paths=source_relative \
		--go-grpc_out=$$tmp --go-grpc_opt=paths=source_relative $(PROTOS) && \
	for f in $$(cd $$tmp && find api -name '*.go'); do \
		cmp -s $$tmp/$$f $$f || { echo "stale generated code: $$f (run make proto)" >&2; exit 1; }; \
	done && \
	for f in $$(find api -name '*.pb.go'); do \
		test -f $$tmp/$$f || { echo "generated file without a proto: $$f" >&2; exit 1; }; \
	done && echo "generated code is current"

# One-machine cluster in the foreground, data under $(RUN_DIR), mounted at $(RUN_MNT).
run: build
	mkdir -p $(RUN_MNT)
	$(BIN)/kelp server -dir $(RUN_DIR) -mount $(RUN_MNT)

vet:
	$(GO) vet ./...

# Install kelp in $(DESTDIR)$(PREFIX)/bin and link it as /sbin/mount.kelp,
# the helper mount(8) runs for fstab lines of type kelp (docs/mount.md).
# Uninstall: rm -f $(DESTDIR)$(PREFIX)/bin/kelp $(DESTDIR)/sbin/mount.kelp
PREFIX        ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/sbin
	install -m 0755 $(BIN)/kelp $(DESTDIR)$(PREFIX)/bin/kelp
	ln -sfn $(PREFIX)/bin/kelp $(DESTDIR)/sbin/mount.kelp

clean:
	rm -rf $(BIN) $(TOOLS)
