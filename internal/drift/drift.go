// Package drift is the schema drift check behind "dbctl drift" and
// "make drift". It holds four sources to one another:
//
//   - atlas.sum against the migration files (nothing edited without a re-hash);
//   - the ent schema against the migration directory (no schema change
//     without a migration), by ent's versioned diff in replay mode;
//   - the migrations against the spec (the Prisma migration), applied to two
//     scratch databases and compared by catalog and by Atlas in both directions;
//   - optionally, a live database against the migrations.
package drift

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"ariga.io/atlas/sql/migrate"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/devdb"
	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/schemadiff"
)

// Options configure [Run].
type Options struct {
	// Dir is the migration directory. Required.
	Dir migrate.Dir
	// Spec is SQL the migrations must build exactly; "" skips that check.
	Spec string
	// Dev is the server scratch databases are created on. Required.
	Dev *devdb.Server
	// URL is a live database to compare with the migrations; "" skips it.
	URL string
	// Schema is the schema of the live database. Default: "public".
	Schema string
}

// Check is the outcome of one comparison.
type Check struct {
	Name        string   `json:"name"`
	InSync      bool     `json:"in_sync"`
	Differences []string `json:"differences"`
}

// Report is the outcome of [Run].
type Report struct {
	InSync bool    `json:"in_sync"`
	Checks []Check `json:"checks"`
}

// Check names, as printed.
const (
	CheckSum  = "atlas.sum matches the migration files"
	CheckEnt  = "ent schema matches the migrations"
	CheckSpec = "migrations build the spec"
	CheckLive = "live database matches the migrations"
)

// Run performs the checks. Differences are reported in the Report; an error
// means a check could not be run (an unreachable database, a failing
// migration).
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Dir == nil || opts.Dev == nil {
		return nil, errors.New("drift: Dir and Dev are required")
	}
	r := &Report{}
	var defers cleanups
	defer defers.run()
	sumErr := migration.Validate(opts.Dir)
	r.add(CheckSum, errLines(sumErr))
	if sumErr != nil {
		// The other checks read the files atlas.sum vouches for.
		return r.done(), nil
	}

	// The checks after atlas.sum wait on the database server, not the CPU,
	// so they run at the same time. The ent check replays the directory on
	// a scratch database of its own. The migrations are applied once, to a
	// second one; the spec is built on a third and the live database
	// reached meanwhile, and each is compared with the migrations as soon
	// as both sides are ready. Errors are reported in the order the checks
	// are listed.
	var (
		wg                               sync.WaitGroup
		migReady                         = make(chan struct{})
		migrated                         *sql.DB
		pending, specDiffs, liveDiffs    []string
		entErr, migErr, specErr, liveErr error
	)
	wg.Go(func() { pending, entErr = entPending(ctx, opts) })
	wg.Go(func() {
		defer close(migReady)
		db, drop, err := scratch(ctx, opts.Dev, "drift_migrations")
		if err != nil {
			migErr = err
			return
		}
		defers.add(drop)
		if _, err := migration.Apply(ctx, db, opts.Dir, migration.ApplyOptions{}); err != nil {
			migErr = fmt.Errorf("drift: apply the migrations to a scratch database: %w", err)
			return
		}
		migrated = db
	})
	if opts.Spec != "" {
		wg.Go(func() {
			db, drop, err := scratch(ctx, opts.Dev, "drift_spec")
			if err != nil {
				specErr = err
				return
			}
			defers.add(drop)
			if _, err := db.ExecContext(ctx, opts.Spec); err != nil {
				specErr = fmt.Errorf("drift: run the spec SQL on a scratch database: %w", err)
				return
			}
			if <-migReady; migrated != nil {
				specDiffs, specErr = Compare(ctx, db, migrated, "public", "public")
			}
		})
	}
	if opts.URL != "" {
		wg.Go(func() {
			db, err := database.Open(opts.URL)
			if err != nil {
				liveErr = err
				return
			}
			defers.add(func() { _ = db.Close() })
			if err := db.PingContext(ctx); err != nil {
				liveErr = fmt.Errorf("drift: connect to the live database: %w", err)
				return
			}
			if <-migReady; migrated != nil {
				liveDiffs, liveErr = Compare(ctx, migrated, db, "public", opts.Schema)
			}
		})
	}
	wg.Wait()
	if err := cmp.Or(entErr, migErr, specErr, liveErr); err != nil {
		return nil, err
	}
	r.add(CheckEnt, pending)
	if opts.Spec != "" {
		r.add(CheckSpec, specDiffs)
	}
	if opts.URL != "" {
		r.add(CheckLive, liveDiffs)
	}
	return r.done(), nil
}

// Compare lists how the schema gotSchema in got differs from wantSchema in
// want (default "public" for either, and the names may differ): by the
// catalog comparison, then by Atlas's diff in both directions. When Atlas
// cannot diff or plan a change the catalog comparison has already found,
// the catalog's differences are returned with a line saying so; an Atlas
// error on schemas the catalog finds equal is returned as an error.
func Compare(ctx context.Context, want, got *sql.DB, wantSchema, gotSchema string) ([]string, error) {
	// The four inspections (two by catalog, two by Atlas) run at once.
	var (
		wg                   sync.WaitGroup
		ws, gs               *schemadiff.Snapshot
		wErr, gErr, atlasErr error
		atlas                []string
	)
	wg.Go(func() { ws, wErr = schemadiff.Inspect(ctx, want, wantSchema) })
	wg.Go(func() { gs, gErr = schemadiff.Inspect(ctx, got, gotSchema) })
	wg.Go(func() { atlas, atlasErr = atlasDiff(ctx, want, got, wantSchema, gotSchema) })
	wg.Wait()
	if err := cmp.Or(wErr, gErr); err != nil {
		return nil, err
	}
	var out []string
	for _, d := range schemadiff.Compare(ws, gs) {
		out = append(out, d.String())
	}
	err := atlasErr
	switch {
	case err != nil && len(out) > 0:
		return append(out, "atlas: could not compare the schemas past the differences above: "+oneLine(err.Error())), nil
	case err != nil:
		return nil, err
	}
	return append(out, atlas...), nil
}

func atlasDiff(ctx context.Context, want, got *sql.DB, wantSchema, gotSchema string) ([]string, error) {
	toWant, fromWant, err := schemadiff.AtlasDiffBoth(ctx, got, want, gotSchema, wantSchema)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range toWant {
		out = append(out, "atlas: to reach the expected schema: "+s)
	}
	for _, s := range fromWant {
		out = append(out, "atlas: the expected schema differs by: "+s)
	}
	return out, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// entPending replays the directory on a scratch database and asks ent what
// its schema would add; each statement is a change without a migration.
func entPending(ctx context.Context, opts Options) ([]string, error) {
	// Generate writes the new file: give it a copy, not the caller's directory.
	mem, err := migration.CopyUpTo(opts.Dir, "")
	if err != nil {
		return nil, err
	}
	devURL, drop, err := opts.Dev.Create(ctx, "drift_ent")
	if err != nil {
		return nil, err
	}
	defer drop()
	name, err := migration.Generate(ctx, mem, migration.GenerateOptions{Name: "pending", DevURL: devURL})
	if errors.Is(err, migration.ErrNoChanges) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	all, err := mem.Files()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range all {
		if f.Name() != name {
			continue
		}
		stmts, err := f.Stmts()
		if err != nil {
			return nil, err
		}
		for _, s := range stmts {
			out = append(out, "no migration for: "+strings.TrimSpace(s)+" (run: make migration name=<what_changed>)")
		}
	}
	return out, nil
}

// cleanups are the closes and drops of one run, added from its goroutines
// and run at its end, at once.
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

func (c *cleanups) run() {
	var wg sync.WaitGroup
	for _, fn := range c.fns {
		wg.Go(fn)
	}
	wg.Wait()
}

func scratch(ctx context.Context, dev *devdb.Server, prefix string) (*sql.DB, func(), error) {
	url, drop, err := dev.Create(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	db, err := database.Open(url)
	if err != nil {
		drop()
		return nil, nil, err
	}
	return db, func() { _ = db.Close(); drop() }, nil
}

func (r *Report) add(name string, diffs []string) {
	if diffs == nil {
		diffs = []string{} // JSON readers get [], not null
	}
	r.Checks = append(r.Checks, Check{Name: name, InSync: len(diffs) == 0, Differences: diffs})
}

func (r *Report) done() *Report {
	r.InSync = true
	for _, c := range r.Checks {
		r.InSync = r.InSync && c.InSync
	}
	return r
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return []string{err.Error()}
}
