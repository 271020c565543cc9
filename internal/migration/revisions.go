package migration

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/schema"
	"github.com/lib/pq"
)

// DefaultRevisionsSchema is the schema of the revisions table when the
// database URL is not scoped to a schema, as with the Atlas CLI.
const DefaultRevisionsSchema = "atlas_schema_revisions"

// RevisionsTable is the name of the table that records applied migrations.
const RevisionsTable = "atlas_schema_revisions"

// revisionsDDL creates the revisions table exactly as the Atlas CLI does
// (same columns, types, defaults and key), so either tool can continue
// where the other stopped.
const revisionsDDL = `CREATE TABLE IF NOT EXISTS %[1]s.%[2]s (
	"version" character varying NOT NULL,
	"description" character varying NOT NULL,
	"type" bigint NOT NULL DEFAULT 2,
	"applied" bigint NOT NULL DEFAULT 0,
	"total" bigint NOT NULL DEFAULT 0,
	"executed_at" timestamptz NOT NULL,
	"execution_time" bigint NOT NULL,
	"error" text NULL,
	"error_stmt" text NULL,
	"hash" character varying NOT NULL,
	"partial_hashes" jsonb NULL,
	"operator_version" character varying NOT NULL,
	PRIMARY KEY ("version")
)`

// CloudIdentifier is the version of the row in which the Atlas CLI keeps
// the revisions table's identifier (a UUID in its description). It is not
// a migration: reads leave it out, as the CLI's do, and it is never written.
const CloudIdentifier = ".atlas_cloud_identifier"

// errCloudIdentifier refuses to treat [CloudIdentifier] as a revision.
var errCloudIdentifier = fmt.Errorf("migration: %s is the Atlas CLI's identifier row, not a revision", CloudIdentifier)

// Revisions reads and writes the revisions table; it implements
// [migrate.RevisionReadWriter] over a connection or a transaction.
type Revisions struct {
	db     schema.ExecQuerier
	schema string
}

// NewRevisions returns the revisions table in schemaName (default
// [DefaultRevisionsSchema]) reached through db.
func NewRevisions(db schema.ExecQuerier, schemaName string) *Revisions {
	if schemaName == "" {
		schemaName = DefaultRevisionsSchema
	}
	return &Revisions{db: db, schema: schemaName}
}

var _ migrate.RevisionReadWriter = (*Revisions)(nil)

func (r *Revisions) table() string {
	return pq.QuoteIdentifier(r.schema) + "." + pq.QuoteIdentifier(RevisionsTable)
}

// Init creates the schema and the table if they do not exist.
func (r *Revisions) Init(ctx context.Context) error {
	if _, err := r.db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pq.QuoteIdentifier(r.schema)); err != nil {
		return fmt.Errorf("migration: create schema %s: %w", r.schema, err)
	}
	if _, err := r.db.ExecContext(ctx, fmt.Sprintf(revisionsDDL, pq.QuoteIdentifier(r.schema), pq.QuoteIdentifier(RevisionsTable))); err != nil {
		return fmt.Errorf("migration: create revisions table: %w", err)
	}
	return nil
}

// Exists reports whether the revisions table exists.
func (r *Revisions) Exists(ctx context.Context) (bool, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, r.table())
	if err != nil {
		return false, fmt.Errorf("migration: look up revisions table: %w", err)
	}
	defer rows.Close()
	var ok bool
	if rows.Next() {
		err = rows.Scan(&ok)
	}
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return false, fmt.Errorf("migration: look up revisions table: %w", err)
	}
	return ok, nil
}

// Ident implements [migrate.RevisionReadWriter].
func (r *Revisions) Ident() *migrate.TableIdent {
	return &migrate.TableIdent{Name: RevisionsTable, Schema: r.schema}
}

const revisionColumns = `"version", "description", "type", "applied", "total", "executed_at", "execution_time", "error", "error_stmt", "hash", "partial_hashes", "operator_version"`

// ReadRevisions implements [migrate.RevisionReadWriter]: all revisions by
// version, none when the table does not exist yet. The
// [CloudIdentifier] row is left out.
func (r *Revisions) ReadRevisions(ctx context.Context) ([]*migrate.Revision, error) {
	if ok, err := r.Exists(ctx); err != nil || !ok {
		return nil, err
	}
	rows, err := r.db.QueryContext(ctx, `SELECT `+revisionColumns+` FROM `+r.table()+
		` WHERE "version" <> $1 ORDER BY "version"`, CloudIdentifier)
	if err != nil {
		return nil, fmt.Errorf("migration: read revisions: %w", err)
	}
	defer rows.Close()
	var revs []*migrate.Revision
	for rows.Next() {
		rev, err := scanRevision(rows)
		if err != nil {
			return nil, err
		}
		revs = append(revs, rev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migration: read revisions: %w", err)
	}
	return revs, nil
}

// ReadRevision implements [migrate.RevisionReadWriter]. It refuses
// [CloudIdentifier].
func (r *Revisions) ReadRevision(ctx context.Context, version string) (*migrate.Revision, error) {
	if version == CloudIdentifier {
		return nil, errCloudIdentifier
	}
	if ok, err := r.Exists(ctx); err != nil {
		return nil, err
	} else if !ok {
		return nil, migrate.ErrRevisionNotExist
	}
	rows, err := r.db.QueryContext(ctx, `SELECT `+revisionColumns+` FROM `+r.table()+` WHERE "version" = $1`, version)
	if err != nil {
		return nil, fmt.Errorf("migration: read revision %s: %w", version, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("migration: read revision %s: %w", version, err)
		}
		return nil, migrate.ErrRevisionNotExist
	}
	return scanRevision(rows)
}

// WriteRevision implements [migrate.RevisionReadWriter]: an upsert by
// version. As in the Atlas CLI's revisions schema, "description" and
// "executed_at" are immutable: an update keeps the values of the first
// write, when the file started. It refuses [CloudIdentifier].
func (r *Revisions) WriteRevision(ctx context.Context, rev *migrate.Revision) error {
	if rev.Version == CloudIdentifier {
		return errCloudIdentifier
	}
	// As the Atlas CLI writes them (through ent): error and error_stmt
	// are '' rather than NULL when empty, and partial_hashes is the JSON
	// encoding of the list, the JSON null when there is none.
	partial, err := json.Marshal(rev.PartialHashes)
	if err != nil {
		return fmt.Errorf("migration: encode partial hashes: %w", err)
	}
	_, err = r.db.ExecContext(ctx, `INSERT INTO `+r.table()+` (`+revisionColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT ("version") DO UPDATE SET
	"type" = excluded."type", "applied" = excluded."applied",
	"total" = excluded."total", "execution_time" = excluded."execution_time",
	"error" = excluded."error", "error_stmt" = excluded."error_stmt", "hash" = excluded."hash",
	"partial_hashes" = excluded."partial_hashes", "operator_version" = excluded."operator_version"`,
		rev.Version, rev.Description, int64(rev.Type), rev.Applied, rev.Total, rev.ExecutedAt,
		int64(rev.ExecutionTime), rev.Error, rev.ErrorStmt, rev.Hash, string(partial), rev.OperatorVersion)
	if err != nil {
		return fmt.Errorf("migration: write revision %s: %w", rev.Version, err)
	}
	return nil
}

// DeleteRevision implements [migrate.RevisionReadWriter]. It refuses
// [CloudIdentifier].
func (r *Revisions) DeleteRevision(ctx context.Context, version string) error {
	if version == CloudIdentifier {
		return errCloudIdentifier
	}
	if _, err := r.db.ExecContext(ctx, `DELETE FROM `+r.table()+` WHERE "version" = $1`, version); err != nil {
		return fmt.Errorf("migration: delete revision %s: %w", version, err)
	}
	return nil
}

func scanRevision(rows *sql.Rows) (*migrate.Revision, error) {
	var (
		rev          migrate.Revision
		typ, execNS  int64
		errText, stm sql.NullString
		partial      []byte
	)
	if err := rows.Scan(&rev.Version, &rev.Description, &typ, &rev.Applied, &rev.Total, &rev.ExecutedAt,
		&execNS, &errText, &stm, &rev.Hash, &partial, &rev.OperatorVersion); err != nil {
		return nil, fmt.Errorf("migration: scan revision: %w", err)
	}
	rev.Type = migrate.RevisionType(typ)
	rev.ExecutionTime = time.Duration(execNS)
	rev.Error, rev.ErrorStmt = errText.String, stm.String
	if len(partial) > 0 {
		if err := json.Unmarshal(partial, &rev.PartialHashes); err != nil {
			return nil, fmt.Errorf("migration: decode partial hashes of %s: %w", rev.Version, err)
		}
	}
	return &rev, nil
}

// errLocked reports that another migration run holds the lock.
var errLocked = errors.New("migration: another migration run holds the lock on this database")

// RevisionsSchemaFor returns the schema of the revisions table by the Atlas
// CLI's rule: flag (its --revisions-schema) when given, else the schema the
// URL is bound to (bound, its search_path), else [DefaultRevisionsSchema].
func RevisionsSchemaFor(bound, flag string) string {
	switch {
	case flag != "":
		return flag
	case bound != "":
		return bound
	default:
		return DefaultRevisionsSchema
	}
}

// AmbiguousRevisionsError is the Atlas CLI's refusal ("ambiguous revision
// table") for a URL bound to a schema that has no revisions table while
// [DefaultRevisionsSchema] has one, without --revisions-schema: the
// revisions may be in either place, and starting a new table in the bound
// schema would apply every file again.
type AmbiguousRevisionsError struct {
	Schema string // the schema the URL is bound to
}

func (e *AmbiguousRevisionsError) Error() string {
	return fmt.Sprintf("migration: ambiguous revision table: none in the connected schema %q, but %s.%s exists: "+
		"pass --revisions-schema %s to use it, or --revisions-schema %s to start a new one in the connected schema "+
		"(or drop the schema %s if it is unused)",
		e.Schema, DefaultRevisionsSchema, RevisionsTable, DefaultRevisionsSchema, e.Schema, DefaultRevisionsSchema)
}

// CheckRevisionsSchema is the Atlas CLI's guard: when the URL is bound to
// a schema (bound) and no --revisions-schema was given (flag), a revisions
// table that exists only in [DefaultRevisionsSchema] is refused with an
// [AmbiguousRevisionsError]. It reads the catalog and changes nothing.
func CheckRevisionsSchema(ctx context.Context, db schema.ExecQuerier, bound, flag string) error {
	if bound == "" || flag != "" {
		return nil
	}
	if ok, err := NewRevisions(db, bound).Exists(ctx); err != nil || ok {
		return err
	}
	if bound == DefaultRevisionsSchema {
		return nil
	}
	ok, err := NewRevisions(db, DefaultRevisionsSchema).Exists(ctx)
	if err != nil {
		return err
	}
	if ok {
		return &AmbiguousRevisionsError{Schema: bound}
	}
	return nil
}
