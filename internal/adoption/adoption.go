// Package adoption lets dbctl take over a database that Prisma Migrate (or
// anything else) migrated, without running its CREATE TABLEs again: it finds
// the last migration Prisma finished, checks that the live schema equals what
// the migration directory builds up to that version, and only then lets the
// applier record that version as an Atlas baseline revision, exactly as
// "atlas migrate apply --baseline" would. Prisma's _prisma_migrations table
// is read, never written.
package adoption

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"ariga.io/atlas/sql/migrate"
	"github.com/lib/pq"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/devdb"
	"github.com/klozd/api/internal/drift"
	"github.com/klozd/api/internal/migration"
)

// PrismaTable is the table in which Prisma Migrate records its migrations.
const PrismaTable = "_prisma_migrations"

// Prisma is what _prisma_migrations says about a database.
type Prisma struct {
	// Finished lists the migrations Prisma applied (finished_at set,
	// rolled_back_at not), by name, in order.
	Finished []string
	// Unfinished lists migrations Prisma started and neither finished nor
	// rolled back: a failed "prisma migrate deploy".
	Unfinished []string
}

// Latest returns the last finished migration's name, or "".
func (p *Prisma) Latest() string {
	if len(p.Finished) == 0 {
		return ""
	}
	return p.Finished[len(p.Finished)-1]
}

// ReadPrisma reads _prisma_migrations in schemaName (default "public"). It
// returns nil, nil when the table does not exist.
func ReadPrisma(ctx context.Context, db *sql.DB, schemaName string) (*Prisma, error) {
	if schemaName == "" {
		schemaName = "public"
	}
	table := pq.QuoteIdentifier(schemaName) + "." + pq.QuoteIdentifier(PrismaTable)
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
		return nil, fmt.Errorf("adoption: look up %s: %w", PrismaTable, err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := db.QueryContext(ctx, `SELECT migration_name, finished_at IS NOT NULL FROM `+table+
		` WHERE rolled_back_at IS NULL ORDER BY migration_name`)
	if err != nil {
		return nil, fmt.Errorf("adoption: read %s: %w", PrismaTable, err)
	}
	defer rows.Close()
	p := &Prisma{}
	for rows.Next() {
		var (
			name     string
			finished bool
		)
		if err := rows.Scan(&name, &finished); err != nil {
			return nil, fmt.Errorf("adoption: read %s: %w", PrismaTable, err)
		}
		if finished {
			p.Finished = append(p.Finished, name)
		} else {
			p.Unfinished = append(p.Unfinished, name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("adoption: read %s: %w", PrismaTable, err)
	}
	return p, nil
}

// BaselineFor returns the version of dir that the Prisma state corresponds
// to: the file whose version is the prefix of the last finished Prisma
// migration (Prisma names them <version>_<name>, as Atlas does). It refuses
// a failed Prisma migration and a Prisma migration the directory lacks.
func BaselineFor(p *Prisma, dir migrate.Dir) (string, error) {
	if len(p.Unfinished) > 0 {
		return "", fmt.Errorf("adoption: Prisma migration %s started but did not finish: resolve it with Prisma first (prisma migrate resolve)", p.Unfinished[0])
	}
	latest := p.Latest()
	if latest == "" {
		return "", nil
	}
	version, _, _ := strings.Cut(latest, "_")
	files, err := dir.Files()
	if err != nil {
		return "", fmt.Errorf("adoption: list files: %w", err)
	}
	for _, f := range files {
		if f.Version() == version {
			return version, nil
		}
	}
	return "", fmt.Errorf("adoption: the database has Prisma migration %s, which the migration directory does not have (no file with version %s)", latest, version)
}

// MismatchError is returned by [Verify] when the live schema is not the one
// the directory builds up to the baseline version.
type MismatchError struct {
	Version     string
	Differences []string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("adoption: the live schema differs from the migrations up to %s in %d ways; refusing to baseline: %s",
		e.Version, len(e.Differences), strings.Join(e.Differences, "; "))
}

// Verify applies the files of dir up to and including version to a scratch
// database on dev and compares its public schema with liveSchema (default
// "public") of live, by catalog and by Atlas ([drift.Compare]). It returns
// a [*MismatchError] listing the differences when they differ.
func Verify(ctx context.Context, live *sql.DB, liveSchema string, dir migrate.Dir, version string, dev *devdb.Server) error {
	if liveSchema == "" {
		liveSchema = "public"
	}
	upTo, err := migration.CopyUpTo(dir, version)
	if err != nil {
		return fmt.Errorf("adoption: baseline: %w", err)
	}
	url, drop, err := dev.Create(ctx, "dbctl_baseline")
	if err != nil {
		return err
	}
	defer drop()
	scratch, err := database.Open(url)
	if err != nil {
		return err
	}
	defer scratch.Close()
	if _, err := migration.Apply(ctx, scratch, upTo, migration.ApplyOptions{}); err != nil {
		return fmt.Errorf("adoption: apply the migrations up to %s to a scratch database: %w", version, err)
	}
	diffs, err := drift.Compare(ctx, scratch, live, "public", liveSchema)
	if err != nil {
		return fmt.Errorf("adoption: compare schemas: %w", err)
	}
	if len(diffs) > 0 {
		return &MismatchError{Version: version, Differences: diffs}
	}
	return nil
}
