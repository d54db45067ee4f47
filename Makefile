# DLS — build, test and run targets. `make help` lists them.
GO       ?= go
BIN      := bin
GOBIN    := $(shell $(GO) env GOPATH)/bin
# Every plugins/<kind>/<type>/main.go is a plugin, built to
# bin/plugins/dls-<kind>-<type>; every examples/<name>/main.go a vendor
# example plugin, built to bin/plugins/dls-<name>.
PLUGINS  := $(patsubst plugins/%/main.go,%,$(wildcard plugins/*/*/main.go))
EXAMPLES := $(patsubst examples/%/main.go,%,$(wildcard examples/*/main.go))
CONFIG   ?= dls.hcl
# What dls version prints; make deb names the package after it.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Extra go build flags (e.g. -trimpath), and the plugins' link flags (make release: stripped).
BUILDFLAGS ?=
PLUGIN_LDFLAGS ?=

.PHONY: help build release cross-check deb deb-test test e2e demo run proto lint bench bench-storage bench-dhcp bench-dhcp-first bench-dhcp6 bench-iscsi conformance-iscsi bench-tftp clean tools

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/dls and every plugin into bin/plugins/
	@mkdir -p $(BIN)/plugins
	$(GO) build $(BUILDFLAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/dls ./core/cmd/dls
	@set -e; for p in $(PLUGINS); do \
	  echo "$(GO) build $(BUILDFLAGS) -o $(BIN)/plugins/dls-$$(echo $$p | tr / -) ./plugins/$$p"; \
	  $(GO) build $(BUILDFLAGS) -ldflags "$(PLUGIN_LDFLAGS)" -o $(BIN)/plugins/dls-$$(echo $$p | tr / -) ./plugins/$$p; \
	done
	@set -e; for e in $(EXAMPLES); do \
	  echo "$(GO) build -o $(BIN)/plugins/dls-$$e ./examples/$$e"; \
	  $(GO) build -o $(BIN)/plugins/dls-$$e ./examples/$$e; \
	done

run: build ## build, then serve dls.hcl (loopback, ports > 1024, state in ./var, no root)
	@# First-stage iPXE binaries for the TFTP plugin, from Debian's ipxe package when installed.
	@mkdir -p var/plugins/boot/tftp
	@for f in undionly.kpxe ipxe.efi snponly.efi; do \
	  if [ -e /usr/lib/ipxe/$$f ] && [ ! -e var/plugins/boot/tftp/$$f ]; then cp -L /usr/lib/ipxe/$$f var/plugins/boot/tftp/; fi; \
	done
	$(BIN)/dls serve --config $(CONFIG)

# make release builds for these platforms, each into dist/<os>_<arch>/.
PLATFORMS := linux/amd64 linux/arm64 freebsd/amd64

release: $(addprefix dist-,$(subst /,_,$(PLATFORMS))) ## cross-build dls and every plugin into dist/<os>_<arch>/ (linux/amd64, linux/arm64, freebsd/amd64), with dist/SHA256SUMS
	cd dist && sha256sum $$(find $(subst /,_,$(PLATFORMS)) -type f | sort) >SHA256SUMS
	@echo "dist/SHA256SUMS: $$(wc -l <dist/SHA256SUMS) files"

# dist-<os>_<arch>: dls and DLS's own plugins (not the vendor examples),
# stripped, for one platform. Cross builds are static (no cgo); the native
# one uses cgo as go build does (os/user through NSS), as make build.
# Without -trimpath (BUILDFLAGS=-trimpath to add it) the build reuses what
# make cross-check and make test compiled.
dist-%:
	rm -rf dist/$*
	GOOS=$(word 1,$(subst _, ,$*)) GOARCH=$(word 2,$(subst _, ,$*)) \
	  $(MAKE) --no-print-directory build BIN=dist/$* EXAMPLES= LDFLAGS="$(LDFLAGS) -s -w" PLUGIN_LDFLAGS="-s -w"

cross-check: ## build and vet for freebsd/amd64 and linux/arm64; compile every test binary for freebsd (.ci/run)
	bash .ci/cross-check.sh

deb: dist-linux_amd64 ## dist/dls_<version>_amd64.deb: make release's linux/amd64 build packaged with nfpm (packaging/deb)
	rm -f dist/dls_*_amd64.deb
	cd packaging/deb && $(GO) run . -version "$(VERSION)" -bin $(CURDIR)/dist/linux_amd64 -repo $(CURDIR) -out $(CURDIR)/dist

deb-test: deb ## (root) install the .deb in a fresh debootstrap root, check it, purge it
	bash .ci/deb-test.sh dist/dls_*_amd64.deb

test: ## unit and subprocess tests with the race detector (no root, no network)
	$(GO) test -race -count=1 -timeout 15m ./...

e2e: ## (root) QEMU machines boot from DLS in network namespaces, against dnsmasq+tgt, watched by Prometheus
	bash e2e/run.sh test $(ARGS)

demo: ## (root) one QEMU machine boots from DLS; its console, session and metrics
	bash e2e/run.sh demo $(ARGS)

lint: tools ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	$(GOBIN)/staticcheck ./...
	$(GOBIN)/staticcheck -tags e2e ./e2e/...
	cd packaging/deb && $(GO) vet ./... && $(GOBIN)/staticcheck ./...

bench: ## Go benchmarks: /metrics under load, host-service round trips, store, volumes, clones
	$(GO) test -run '^$$' -bench . -benchtime 2s ./core/... ./sdk/... ./plugins/...

bench-storage: ## clone time by image size; overlay and zfs volume I/O as ratios to a raw file
	$(GO) test -run '^$$' -bench 'Clone|VolumeIO' -benchtime 2s ./plugins/storage/...
	$(GO) test -run '^$$' -bench . -benchtime 2s ./sdk/volume/

bench-tftp: ## TFTP plugin vs tftp-hpa (lock-step, windowsize 16, 200-client storm) and HTTP /boot/files, same run (root)
	bash bench/tftp/run.sh

bench-dhcp: ## DHCP throughput: DLS against kea-dhcp4 with perfdhcp; PG=1 adds both on PostgreSQL (root; kea-admin kea-dhcp4-server)
	bash bench/dhcp/run.sh

bench-dhcp-first: ## DHCP first contact: DLS vs kea-dhcp4, both fresh each rung, random MACs, 1k..32k/s ladder, none and 1000 declared (root)
	bash bench/dhcp/run.sh -first $(ARGS)

bench-dhcp6: ## DHCPv6 first contact: the dhcp6 plugin vs kea-dhcp6 with perfdhcp -6, both fresh each rung, ladder, ratio (root; kea-admin kea-dhcp6-server)
	bash bench/dhcp6/run.sh $(ARGS)

bench-iscsi: ## DLS's iSCSI target vs tgt on one file: qemu-img bench and iscsi-perf, ratios (root)
	bash bench/iscsi/run.sh

conformance-iscsi: ## libiscsi iscsi-test-cu against DLS and tgt, passed/total for both (root)
	bash bench/iscsi/conformance.sh

.PHONY: bench-storm bench-storm-chaos bench-storm-soak bench-storm-console
STORM_N ?= 1000
bench-storm: ## boot storm of STORM_N (1000) simulated machines, all at once: DLS, then dnsmasq+httpd+tgt, ratios (root)
	bash bench/storm/run.sh -n $(STORM_N) $(ARGS)

bench-storm-chaos: ## boot storm ramped over 30 s; kill -9 of each plugin and the host mid-storm; leases, writes, restarts checked (root)
	bash bench/storm/run.sh -n $(STORM_N) -chaos -ramp 30s $(ARGS)

bench-storm-soak: ## DLS storms back to back for STORM_LOOP (30m); host and plugin RSS, threads, fds, goroutines to storm-soak.csv (root)
	bash bench/storm/run.sh -n $(STORM_N) -loop $(or $(STORM_LOOP),30m) -csv $(CURDIR)/storm-soak.csv $(ARGS)

bench-storm-console: ## DLS storm with and without the floor console open in chromium: first render idle / mid-storm, heap, DOM, lag, storm ratios (root)
	bash bench/storm/run.sh -n $(STORM_N) -stacks dls -console $(ARGS)

proto: tools ## regenerate sdk/proto/dlsv1 from sdk/proto/*.proto
	cd sdk/proto && PATH="$(GOBIN):$$PATH" protoc -I . \
	  --go_out=dlsv1 --go_opt=paths=source_relative \
	  --go-grpc_out=dlsv1 --go-grpc_opt=paths=source_relative *.proto

tools: ## install protoc plugins and staticcheck (versions pinned)
	@test -x $(GOBIN)/protoc-gen-go || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	@test -x $(GOBIN)/protoc-gen-go-grpc || $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

clean: ## remove build output (state in ./var is kept)
	rm -rf $(BIN) dist
