# Jetway developer commands. Every tool is pinned in tools/go.mod and run
# with `go tool`, so a fresh machine needs only Go and the module proxy.
BUF := go tool -modfile=tools/go.mod buf

.PHONY: run generate lint breaking test test-deploy check-generated ci bench bench-quick faults soak

## run: start the bridge with an embedded JetStream server
run:
	go run ./cmd/bridge

## generate: regenerate gen/ from proto/
generate:
	./scripts/generate.sh

## lint: buf lint and format, go vet, gofmt
lint:
	$(BUF) lint
	$(BUF) format --diff --exit-code
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

## breaking: the contract stays wire- and JSON-compatible with the previous commit
breaking:
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then $(BUF) breaking --against '.git#ref=HEAD~1'; else echo "no previous commit: breaking check skipped"; fi

## test: the test suite (README's test command)
test:
	go test -race -shuffle=on -count=1 -timeout 10m ./...

## test-deploy: build the image's binary as deploy/Dockerfile does and run the image, the
## compose topology and the Kubernetes pod in network namespaces (root; under a minute
## with a warm build cache, a few more cold; skipped when not root)
test-deploy:
	JETWAY_TEST_DEPLOY=1 go test -count=1 -timeout 10m -run '^TestInNamespaces$$' -v ./deploy

## check-generated: fail when gen/ differs from what proto/ generates
check-generated: generate
	@git diff --exit-code --stat -- gen/ proto/ || (echo "gen/ or proto/ formatting is stale: run make generate" && exit 1)
	@untracked=$$(git ls-files --others --exclude-standard -- gen/); if [ -n "$$untracked" ]; then echo "untracked generated files: $$untracked"; exit 1; fi

## ci: everything CI runs
ci: lint breaking check-generated test test-deploy

## bench: the side-by-side benchmark, bridge vs native nats.go (full run, under 10 minutes)
bench:
	go run ./cmd/bench -json bench.json

## bench-quick: the same in under a minute
bench-quick:
	go run ./cmd/bench -quick

## faults: the fault-injection suite, short form (real nats-server and bridge processes; under 2 minutes)
faults:
	go test -race -count=1 -timeout 10m -v ./faults/

## soak: the fault-injection suite for 30 minutes in all (split between its scenarios), with the
## bridge's RSS and goroutine trend (docs/reliability.md)
soak:
	FAULTS_DURATION=30m go test ./faults -count=1 -timeout 70m -v -run .
