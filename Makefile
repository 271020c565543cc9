# The front door: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
DBCTL     := bin/dbctl
# Tests use TEST_DATABASE_URL (or DATABASE_URL) when set, else a throwaway local PostgreSQL.
TESTFLAGS ?= -race -count=1
BENCHTIME ?= 2s

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: dbctl
dbctl: ## build bin/dbctl
	@$(GO) build -o bin/dbctl ./cmd/dbctl

.PHONY: generate
generate: ## regenerate the ent client from ent/schema (prisma generate)
	$(GO) generate ./...

.PHONY: migration
migration: dbctl ## write the next migration from ent schema changes: make migration name=add_x (prisma migrate dev --name)
	@test -n "$(name)" || { echo "make migration: give a name, e.g. make migration name=add_user_index"; exit 2; }
	$(DBCTL) migrate new $(name)

.PHONY: drift
drift: dbctl ## check atlas.sum, ent schema, migrations and spec agree (on a throwaway PostgreSQL); exit 1 on drift
	$(DBCTL) drift

.PHONY: migrate
migrate: dbctl ## apply pending migrations to DATABASE_URL, adopting a Prisma-migrated database (prisma migrate deploy)
	@test -n "$$DATABASE_URL" || { echo "make migrate: set DATABASE_URL=postgres://user:pass@host:5432/db"; exit 2; }
	$(DBCTL) migrate apply

.PHONY: status
status: dbctl ## applied/pending/failed/unknown migrations of DATABASE_URL; make exits 2 when not up to date (bin/dbctl migrate status gives 3/4/5)
	$(DBCTL) migrate status

.PHONY: migrate-lint
migrate-lint: dbctl ## lint the latest migration for destructive and incompatible changes
	$(DBCTL) migrate lint --latest 1

.PHONY: reset
reset: dbctl ## development only: drop the schema of a local DATABASE_URL and apply all migrations (prisma migrate reset)
	$(DBCTL) migrate reset

.PHONY: dev
dev: dbctl ## a throwaway PostgreSQL with all migrations applied; prints its URL, Ctrl-C stops it
	$(DBCTL) dev

# The suites that run a second time on pgx's stdlib driver, and the soak
# suite's short run.
PGX_PKGS  := ./internal/database ./internal/lockout ./internal/idem

.PHONY: test
test: verify lint ## run every test on real PostgreSQL with -race (after verify and lint), then the service suites on pgx
	$(GO) test $(TESTFLAGS) ./...
	TEST_DB_DRIVER=pgx $(GO) test $(TESTFLAGS) $(PGX_PKGS)
	TEST_DB_DRIVER=pgx $(GO) test $(TESTFLAGS) -run '^TestSoakShort$$' ./internal/soak

.PHONY: bench
bench: ## run the benchmarks (service vs hand-written SQL baselines)
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./...

.PHONY: soak
soak: ## fault-and-load suite: restart, killed connections, slow database, pool exhaustion, two instances (and a bare baseline), failover (async, sync), partition, lost replies, resets, latency
	$(GO) run ./cmd/soak $(SOAKFLAGS)

.PHONY: lint
lint: ## gofmt, go vet, and actionlint on the GitHub workflow
	@files=$$(git ls-files '*.go') && test -n "$$files" || { echo "lint: no Go files listed by git ls-files (not a git work tree, or safe.directory?)"; exit 1; }; \
	out=$$(gofmt -l $$files); test -z "$$out" || { echo "gofmt needed on:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GO) tool actionlint

.PHONY: verify
verify: ## fail when go generate ./... or go mod tidy would change the tree
	@git rev-parse --is-inside-work-tree >/dev/null || { echo "verify: needs a git work tree (for a checkout owned by another user: git config --global --add safe.directory '*')"; exit 1; }; \
	snapshot() { git status --porcelain -uall && git diff HEAD && git ls-files -o --exclude-standard -z | xargs -0r sha256sum; }; \
	before=$$(snapshot | sha256sum) || exit 1; \
	$(GO) generate ./... || { echo "verify: go generate ./... failed"; exit 1; }; \
	$(GO) mod tidy || { echo "verify: go mod tidy failed"; exit 1; }; \
	after=$$(snapshot | sha256sum) || exit 1; \
	if [ "$$before" != "$$after" ]; then \
		echo "verify: go generate ./... or go mod tidy changed the tree; commit the result:"; git status --short; exit 1; \
	fi
