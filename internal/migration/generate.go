package migration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"text/template"

	"ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	entschema "entgo.io/ent/dialect/sql/schema"

	entmigrate "github.com/klozd/api/ent/migrate"
)

// ErrNoChanges is returned by [Generate] when the ent schema already equals
// the state the migration directory builds: there is nothing to write.
var ErrNoChanges = errors.New("migration: no schema changes: the migration directory already matches the ent schema")

// entDiffMu serialises ent's schema diff; see Generate.
var entDiffMu sync.Mutex

// GenerateOptions configure [Generate].
type GenerateOptions struct {
	// Name is the file's description, as in <version>_<name>.sql.
	Name string
	// Version is the file's version. Default: the current UTC time as
	// YYYYMMDDHHMMSS, as Atlas and Prisma name migrations.
	Version string
	// DevURL is an empty scratch database the directory is replayed on.
	DevURL string
}

// Generate writes the migration that takes the state built by dir's files to
// the state of the ent schema, computed by ent's versioned-migration diff in
// replay mode on a dev database, and updates atlas.sum. It returns the new
// file's name, or [ErrNoChanges].
func Generate(ctx context.Context, dir migrate.Dir, opts GenerateOptions) (string, error) {
	if opts.Name == "" {
		return "", errors.New("migration: a migration needs a name (for example add_user_index)")
	}
	if err := Validate(dir); err != nil {
		return "", err
	}
	files, err := dir.Files()
	if err != nil {
		return "", fmt.Errorf("migration: list files: %w", err)
	}
	version := opts.Version
	if version == "" {
		version = migrate.NewVersion()
	}
	if err := migrate.CheckVersion(version); err != nil {
		return "", fmt.Errorf("migration: version %q: %w", version, err)
	}
	if n := len(files); n > 0 && version <= files[n-1].Version() {
		return "", fmt.Errorf("migration: version %s is not after the latest migration %s", version, files[n-1].Name())
	}
	before := len(files)
	// ent's diff links columns, indexes and keys inside the generated
	// package-level table descriptions (entmigrate.Tables) on every call, so
	// two diffs at once race on them.
	entDiffMu.Lock()
	defer entDiffMu.Unlock()
	err = entmigrate.NamedDiff(ctx, opts.DevURL, opts.Name,
		entschema.WithDir(dir),
		entschema.WithMigrationMode(entschema.ModeReplay),
		entschema.WithDialect(dialect.Postgres),
		entschema.WithFormatter(formatter(version)),
		entschema.WithDropColumn(true),
		entschema.WithDropIndex(true),
		entschema.WithErrNoPlan(true),
	)
	switch {
	case errors.Is(err, migrate.ErrNoPlan):
		return "", ErrNoChanges
	case err != nil:
		return "", fmt.Errorf("migration: diff the ent schema against the migration directory: %w", err)
	}
	files, err = dir.Files()
	if err != nil || len(files) != before+1 {
		return "", fmt.Errorf("migration: expected one new file after the diff: %v", err)
	}
	return files[len(files)-1].Name(), nil
}

// formatter is Atlas's default formatter with a fixed version, so the first
// migration keeps the version Prisma gave it.
func formatter(version string) migrate.Formatter {
	name := template.Must(template.New("name").Parse(
		version + "{{ with .Name }}_{{ . }}{{ end }}.sql"))
	return migrate.TemplateFormatter{{N: name, C: migrate.DefaultFormatter[0].C}}
}
