package migration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
)

// lockName is the advisory lock the Atlas CLI takes around "migrate apply";
// taking the same one keeps dbctl and the CLI from running at once.
const lockName = "atlas_migrate_execute"

// OperatorVersion is written to the operator_version column of each revision.
const OperatorVersion = "klozd dbctl"

// ApplyOptions configure [Apply]. The zero value applies every pending file.
type ApplyOptions struct {
	// RevisionsSchema holds the revisions table. Default: [DefaultRevisionsSchema].
	// [SchemasFor] derives it from a URL as the Atlas CLI does.
	RevisionsSchema string
	// Schema is the schema the connection is bound to (the URL's
	// search_path), as the Atlas CLI sees it: only that schema must be
	// clean on a first run. Default: none, the whole database must be clean.
	Schema string
	// Baseline, on a database with no revisions, records this version as
	// already applied and starts after it, as "atlas migrate apply --baseline".
	Baseline string
	// LockTimeout bounds the wait for a concurrent run to finish. Default: 10s.
	LockTimeout time.Duration
	// Logger receives Atlas's execution log. Default: none.
	Logger migrate.Logger
}

// ApplyReport tells what [Apply] did.
type ApplyReport struct {
	// Applied lists the files applied, in order.
	Applied []migrate.File
	// Baseline is the version recorded as a baseline revision by this run,
	// if any.
	Baseline string
}

// ErrLocked is returned by [Apply] when another run holds the migration
// lock for longer than the lock timeout.
var ErrLocked = errLocked

// FileError is returned by [Apply] when a statement of a file fails. The
// file's transaction is rolled back, earlier files stay applied, and the
// error is recorded in its revision as the Atlas CLI does.
type FileError struct {
	File string // file name
	Stmt string // the failing statement
	Err  error  // the database error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("migration: %s: statement failed: %v\n\tstatement: %s", e.File, e.Err, e.Stmt)
}

func (e *FileError) Unwrap() error { return e.Err }

// Apply validates atlas.sum, then applies the pending files of dir to db,
// each in its own transaction together with its revision row, under the
// advisory lock the Atlas CLI uses. Running it again is a no-op.
//
// The lock is taken on a dedicated session, after [CheckSession]'s probe:
// on a connection through a transaction pooler Apply returns an error
// wrapping [ErrPooled] and changes nothing. The holder of the lock is
// checked right after taking it and again before releasing it. A lock that
// cannot be released as it should is reported as an [UnlockError], joined
// with the run's own error, and its session is closed so that the server
// drops it: Apply never returns with the lock held.
func Apply(ctx context.Context, db *sql.DB, dir migrate.Dir, opts ApplyOptions) (report *ApplyReport, err error) {
	if err := Validate(dir); err != nil {
		return nil, err
	}
	drv, err := postgres.Open(db)
	if err != nil {
		return nil, fmt.Errorf("migration: open database: %w", err)
	}
	timeout := opts.LockTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	lock, err := takeLock(ctx, db, lockName, timeout)
	if err != nil {
		return nil, err
	}
	defer func() {
		if uerr := lock.release(ctx); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()

	revs := NewRevisions(db, opts.RevisionsSchema)
	if err := revs.Init(ctx); err != nil {
		return nil, err
	}
	before, err := revs.ReadRevisions(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range before {
		if err := resumable(r); err != nil {
			return nil, err
		}
	}
	if opts.Schema != "" {
		drv = schemaBound{Driver: drv, schema: opts.Schema}
	}
	ex, err := newExecutor(drv, dir, revs, opts, false)
	if err != nil {
		return nil, err
	}
	report = &ApplyReport{}
	if len(before) == 0 && opts.Baseline != "" {
		report.Baseline = opts.Baseline
	}
	pending, err := ex.Pending(ctx)
	if errors.Is(err, migrate.ErrNoPendingFiles) {
		return report, nil
	} else if err != nil {
		return nil, fmt.Errorf("migration: find pending files: %w", err)
	}
	for _, f := range pending {
		if err := applyFile(ctx, db, dir, f, opts); err != nil {
			return report, err
		}
		report.Applied = append(report.Applied, f)
	}
	return report, nil
}

func newExecutor(drv migrate.Driver, dir migrate.Dir, revs *Revisions, opts ApplyOptions, dirty bool) (*migrate.Executor, error) {
	xo := []migrate.ExecutorOption{migrate.WithOperatorVersion(OperatorVersion), migrate.WithAllowDirty(dirty)}
	if opts.Baseline != "" {
		xo = append(xo, migrate.WithBaselineVersion(opts.Baseline))
	}
	if opts.Logger != nil {
		xo = append(xo, migrate.WithLogger(opts.Logger))
	}
	ex, err := migrate.NewExecutor(drv, dir, revs, xo...)
	if err != nil {
		return nil, fmt.Errorf("migration: %w", err)
	}
	return ex, nil
}

// applyFile runs one file and its revision writes in one transaction. On a
// failing statement the transaction is rolled back and the error is recorded
// in the file's revision outside it, with nothing applied.
func applyFile(ctx context.Context, db *sql.DB, dir migrate.Dir, f migrate.File, opts ApplyOptions) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration: %s: begin: %w", f.Name(), err)
	}
	defer func() { _ = tx.Rollback() }()
	drv, err := postgres.Open(tx)
	if err != nil {
		return fmt.Errorf("migration: %s: %w", f.Name(), err)
	}
	txRevs := NewRevisions(tx, opts.RevisionsSchema)
	// A revision recording a failed attempt that rolled back entirely
	// describes the file as it was then: its total and hash are stale once
	// the file is fixed, and the executor would resume from it with the
	// new statements, leaving the old total behind. Start afresh, in the
	// file's transaction, so that a new failure restores it.
	if err := dropRolledBack(ctx, txRevs, f.Version()); err != nil {
		return err
	}
	ex, err := newExecutor(drv, dir, txRevs, ApplyOptions{Logger: opts.Logger}, true)
	if err != nil {
		return err
	}
	start := time.Now()
	execErr := ex.Execute(ctx, f)
	if execErr == nil {
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration: %s: commit: %w", f.Name(), err)
		}
		return nil
	}
	_ = tx.Rollback()
	var se *migrate.StmtExecError
	if !errors.As(execErr, &se) {
		return fmt.Errorf("migration: %s: %w", f.Name(), execErr)
	}
	fe := &FileError{File: f.Name(), Stmt: se.Stmt.Text, Err: se.Err}
	if err := recordFailure(ctx, db, dir, f, se, start, opts); err != nil {
		return errors.Join(fe, err)
	}
	return fe
}

// resumable returns an error for a revision the executor cannot continue:
// one that records statements applied without their hashes, which it
// checks before resuming a partially applied file.
func resumable(r *migrate.Revision) error {
	if r.Type.Has(migrate.RevisionTypeBaseline) || r.Applied == r.Total || r.Applied <= len(r.PartialHashes) {
		return nil
	}
	return fmt.Errorf("migration: revision %s records %d of %d statements applied but not which, so it cannot be resumed: "+
		"compare the database with the file, then correct or delete the row in %s", r.Version, r.Applied, r.Total, RevisionsTable)
}

// rolledBack reports whether rev records an attempt that failed and
// applied nothing, as [recordFailure] writes it.
func rolledBack(rev *migrate.Revision) bool {
	return rev.Type == migrate.RevisionTypeExecute && rev.Applied == 0 && rev.Error != ""
}

// dropRolledBack deletes the revision of version when it is [rolledBack].
func dropRolledBack(ctx context.Context, revs *Revisions, version string) error {
	rev, err := revs.ReadRevision(ctx, version)
	switch {
	case errors.Is(err, migrate.ErrRevisionNotExist):
		return nil
	case err != nil:
		return err
	case rolledBack(rev):
		return revs.DeleteRevision(ctx, version)
	}
	return nil
}

// recordFailure records the failed statement in the file's revision, after
// its transaction was rolled back. A revision that statements of an earlier
// run were recorded in (the Atlas CLI without a transaction) keeps its
// progress and gains the error; otherwise the revision is the file's as it
// is now, with nothing applied.
func recordFailure(ctx context.Context, db *sql.DB, dir migrate.Dir, f migrate.File, se *migrate.StmtExecError, start time.Time, opts ApplyOptions) error {
	ctx = context.WithoutCancel(ctx)
	revs := NewRevisions(db, opts.RevisionsSchema)
	prev, err := revs.ReadRevision(ctx, f.Version())
	if err != nil && !errors.Is(err, migrate.ErrRevisionNotExist) {
		return err
	}
	if err == nil && !rolledBack(prev) {
		prev.Error, prev.ErrorStmt = se.Err.Error(), se.Stmt.Text
		prev.ExecutionTime = time.Since(start)
		prev.OperatorVersion = OperatorVersion
		return revs.WriteRevision(ctx, prev)
	}
	sum, err := dir.Checksum()
	if err != nil {
		return fmt.Errorf("migration: %w", err)
	}
	hash, err := sum.SumByName(f.Name())
	if err != nil {
		return fmt.Errorf("migration: %w", err)
	}
	stmts, err := f.Stmts()
	if err != nil {
		return fmt.Errorf("migration: %w", err)
	}
	rev := &migrate.Revision{
		Version:         f.Version(),
		Description:     f.Desc(),
		Type:            migrate.RevisionTypeExecute,
		Applied:         0, // the file's transaction was rolled back
		Total:           len(stmts),
		ExecutedAt:      start,
		ExecutionTime:   time.Since(start),
		Error:           se.Err.Error(),
		ErrorStmt:       se.Stmt.Text,
		Hash:            hash,
		OperatorVersion: OperatorVersion,
	}
	if prev == nil {
		return revs.WriteRevision(ctx, rev)
	}
	// Replace the earlier failure's row whole: it describes the file as it
	// was then.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration: record failure of %s: %w", f.Name(), err)
	}
	defer func() { _ = tx.Rollback() }()
	txRevs := NewRevisions(tx, opts.RevisionsSchema)
	if err := txRevs.DeleteRevision(ctx, f.Version()); err != nil {
		return err
	}
	if err := txRevs.WriteRevision(ctx, rev); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration: record failure of %s: %w", f.Name(), err)
	}
	return nil
}

// schemaBound makes the first-run cleanliness check look at one schema, as
// the Atlas CLI's driver does for a URL with search_path.
type schemaBound struct {
	migrate.Driver
	schema string
}

func (d schemaBound) CheckClean(ctx context.Context, revT *migrate.TableIdent) error {
	s, err := d.InspectSchema(ctx, d.schema, nil)
	switch {
	case schema.IsNotExistError(err):
		return nil
	case err != nil:
		return err
	}
	for _, t := range s.Tables {
		if revT != nil && t.Name == revT.Name && (revT.Schema == "" || revT.Schema == s.Name) {
			continue
		}
		return &migrate.NotCleanError{State: schema.NewRealm(s), Reason: fmt.Sprintf("found table %q in schema %q", t.Name, s.Name)}
	}
	return nil
}
