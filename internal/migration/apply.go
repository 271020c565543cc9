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

// The transaction modes of [ApplyOptions.TxMode], the Atlas CLI's
// --tx-mode.
const (
	// TxModeFile runs each file and its revision in one transaction: a
	// failed file leaves nothing behind, no row either (the default).
	TxModeFile = "file"
	// TxModeAll runs all pending files in one transaction: a failure
	// leaves none of them applied and no row for any of them.
	TxModeAll = "all"
	// TxModeNone runs the statements without a transaction: a failed
	// file keeps the statements before the failing one, and its revision
	// records them ("k of N applied", their hashes and the error), from
	// which the next run continues.
	TxModeNone = "none"
)

// txModeDirective is the file directive that overrides the mode for one
// file, as in the Atlas CLI: "-- atlas:txmode none" (or file).
const txModeDirective = "txmode"

// ApplyOptions configure [Apply]. The zero value applies every pending file.
type ApplyOptions struct {
	// RevisionsSchema holds the revisions table. Default: [DefaultRevisionsSchema].
	// [RevisionsSchemaFor] derives it as the Atlas CLI does.
	RevisionsSchema string
	// RevisionsSchemaGiven says that RevisionsSchema was named explicitly
	// (--revisions-schema). When it is false and Schema is set, Apply
	// makes the Atlas CLI's [CheckRevisionsSchema] first.
	RevisionsSchemaGiven bool
	// Schema is the schema the connection is bound to (the URL's
	// search_path), as the Atlas CLI sees it: only that schema must be
	// clean on a first run. Default: none, the whole database must be clean.
	Schema string
	// TxMode is [TxModeFile] (default), [TxModeAll] or [TxModeNone], as
	// the Atlas CLI's --tx-mode; a file's "-- atlas:txmode" directive
	// overrides it for that file, as in the CLI.
	TxMode string
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
	// Applied lists the files applied, in order (and committed: with
	// [TxModeAll], none when the run failed).
	Applied []migrate.File
	// Baseline is the version recorded as a baseline revision by this run,
	// if any.
	Baseline string
}

// ErrLocked is returned by [Apply] when another run holds the migration
// lock for longer than the lock timeout.
var ErrLocked = errLocked

// FileError is returned by [Apply] when a statement of a file fails. What
// stays applied, and what its revision records, depends on the transaction
// mode, exactly as with the Atlas CLI (see [TxModeFile]).
type FileError struct {
	File string // file name
	Stmt string // the failing statement
	Err  error  // the database error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("migration: %s: statement failed: %v\n\tstatement: %s", e.File, e.Err, e.Stmt)
}

func (e *FileError) Unwrap() error { return e.Err }

// Apply validates atlas.sum, then applies the pending files of dir to db
// under the advisory lock the Atlas CLI uses, as "atlas migrate apply"
// does: the same pending files, the same transactions (opts.TxMode), the
// same revision rows, the same resumption of a partially applied file.
// Running it again is a no-op.
//
// It differs from the CLI only where the CLI would leave a revision that
// neither tool can continue: it refuses to resume a revision that records
// more statements applied than their hashes, or than the file now has
// (the CLI panics on both), and when the file of a partially applied
// revision now has another number of statements, it records that number
// as the revision's total (the CLI keeps the old one, and its revision
// then never completes).
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
	switch opts.TxMode {
	case "":
		opts.TxMode = TxModeFile
	case TxModeFile, TxModeAll, TxModeNone:
	default:
		return nil, fmt.Errorf("migration: unknown transaction mode %q: want file, all or none", opts.TxMode)
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
	if !opts.RevisionsSchemaGiven {
		// Before anything is created, as the CLI.
		if err := CheckRevisionsSchema(ctx, db, opts.Schema, ""); err != nil {
			return nil, err
		}
	}
	revs := NewRevisions(db, opts.RevisionsSchema)
	if err := revs.Init(ctx); err != nil {
		return nil, err
	}
	before, err := revs.ReadRevisions(ctx)
	if err != nil {
		return nil, err
	}
	if len(before) > 0 {
		if err := resumable(before[len(before)-1], dir, drv); err != nil {
			return nil, err
		}
	}
	if opts.Schema != "" {
		drv = schemaBound{Driver: drv, schema: opts.Schema}
	}
	ex, err := newExecutor(drv, dir, revs, opts)
	if err != nil {
		return nil, err
	}
	report = &ApplyReport{}
	pending, err := ex.Pending(ctx)
	if len(before) == 0 && opts.Baseline != "" && (err == nil || errors.Is(err, migrate.ErrNoPendingFiles)) {
		report.Baseline = opts.Baseline
	}
	if errors.Is(err, migrate.ErrNoPendingFiles) {
		return report, nil
	} else if err != nil {
		return nil, fmt.Errorf("migration: find pending files: %w", err)
	}
	run := &txRun{db: db, opts: opts}
	for _, f := range pending {
		if err := run.execute(ctx, dir, f); err != nil {
			run.rollback()
			report.Applied = append(report.Applied, run.committed...)
			return report, err
		}
	}
	if err := run.commit(); err != nil {
		report.Applied = append(report.Applied, run.committed...)
		return report, err
	}
	report.Applied = append(report.Applied, run.committed...)
	return report, nil
}

// txRun runs the pending files as the Atlas CLI's apply does, each in the
// transaction its mode asks for.
type txRun struct {
	db        *sql.DB
	opts      ApplyOptions
	tx        *sql.Tx        // the open transaction, if any
	inTx      []migrate.File // files applied in tx, not committed yet
	committed []migrate.File // files applied and committed
}

// execute runs f and writes its revision.
func (r *txRun) execute(ctx context.Context, dir migrate.Dir, f migrate.File) error {
	mode, err := r.modeFor(f)
	if err != nil {
		return err
	}
	var conn schema.ExecQuerier = r.db
	if mode != TxModeNone {
		if r.tx == nil {
			if r.tx, err = r.db.BeginTx(ctx, nil); err != nil {
				return fmt.Errorf("migration: %s: begin: %w", f.Name(), err)
			}
		}
		conn = r.tx
	}
	drv, err := postgres.Open(conn)
	if err != nil {
		return fmt.Errorf("migration: %s: %w", f.Name(), err)
	}
	revs := NewRevisions(conn, r.opts.RevisionsSchema)
	ex, err := newExecutor(drv, dir, currentTotal{Revisions: revs, file: f, drv: drv}, ApplyOptions{Logger: r.opts.Logger})
	if err != nil {
		return err
	}
	if err := ex.Execute(ctx, f); err != nil {
		var se *migrate.StmtExecError
		if errors.As(err, &se) {
			return &FileError{File: f.Name(), Stmt: se.Stmt.Text, Err: se.Err}
		}
		return fmt.Errorf("migration: %s: %w", f.Name(), err)
	}
	if mode == TxModeNone {
		r.committed = append(r.committed, f)
		return nil
	}
	r.inTx = append(r.inTx, f)
	if mode == TxModeFile {
		return r.commit()
	}
	return nil
}

// modeFor returns the transaction mode of f: its "-- atlas:txmode"
// directive, else the run's, with the CLI's rules.
func (r *txRun) modeFor(f migrate.File) (string, error) {
	lf, ok := f.(*migrate.LocalFile)
	if !ok {
		return r.opts.TxMode, nil
	}
	ds := lf.Directive(txModeDirective)
	switch {
	case len(ds) == 0:
		return r.opts.TxMode, nil
	case len(ds) > 1:
		return "", fmt.Errorf("migration: multiple txmode values found in file %q: %q", f.Name(), ds)
	case ds[0] == TxModeAll:
		return "", fmt.Errorf("migration: txmode %q is not allowed in file directive %q: use %q instead", TxModeAll, f.Name(), TxModeFile)
	case ds[0] != TxModeNone && ds[0] != TxModeFile:
		return "", fmt.Errorf("migration: unknown txmode %q found in file directive %q", ds[0], f.Name())
	case ds[0] == r.opts.TxMode:
		return ds[0], nil
	case r.opts.TxMode == TxModeAll:
		return "", fmt.Errorf("migration: cannot set txmode directive to %q in %q when txmode %q is set globally", ds[0], f.Name(), TxModeAll)
	default:
		return ds[0], nil
	}
}

// commit commits the open transaction, if any.
func (r *txRun) commit() error {
	if r.tx == nil {
		return nil
	}
	tx := r.tx
	r.tx = nil
	if err := tx.Commit(); err != nil {
		r.inTx = nil
		return fmt.Errorf("migration: commit: %w", err)
	}
	r.committed = append(r.committed, r.inTx...)
	r.inTx = nil
	return nil
}

// rollback rolls the open transaction back, if any, with the revisions
// written in it.
func (r *txRun) rollback() {
	if r.tx != nil {
		_ = r.tx.Rollback()
		r.tx, r.inTx = nil, nil
	}
}

func newExecutor(drv migrate.Driver, dir migrate.Dir, revs migrate.RevisionReadWriter, opts ApplyOptions) (*migrate.Executor, error) {
	xo := []migrate.ExecutorOption{migrate.WithOperatorVersion(OperatorVersion)}
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

// currentTotal hands the executor the revision of a partially applied
// file with the file's current number of statements as its total. The
// executor resumes after the statements the revision records, up to the
// end of the file as it is now, but keeps the total of the revision it
// read: when a fix changed the number of statements, the revision would
// end with applied != total, which both tools read as not done and which
// the CLI cannot resume (it panics). When the statements recorded are
// all the file now has, the recorded error is cleared too, as the
// executor clears it after a statement succeeds. Nothing else changes.
type currentTotal struct {
	*Revisions
	file migrate.File
	drv  migrate.Driver
}

func (c currentTotal) ReadRevision(ctx context.Context, version string) (*migrate.Revision, error) {
	rev, err := c.Revisions.ReadRevision(ctx, version)
	if err != nil || version != c.file.Version() || rev.Applied == rev.Total {
		return rev, err
	}
	if stmts, serr := migrate.FileStmtDecls(c.drv, c.file); serr == nil {
		rev.Total = len(stmts)
	}
	if rev.Applied == rev.Total {
		// Nothing is left to run, so nothing can fail: the executor
		// clears the error only after a statement succeeds.
		rev.Error, rev.ErrorStmt = "", ""
	}
	return rev, nil
}

// resumable returns an error for the latest revision, rev, when the
// executor would resume it and cannot: it records statements applied
// without their hashes, which it checks before resuming, or more
// statements applied than its file now has. The Atlas CLI panics on both
// ("index out of range").
func resumable(rev *migrate.Revision, dir migrate.Dir, drv migrate.Driver) error {
	if rev.Applied == rev.Total || rev.Type.Has(migrate.RevisionTypeBaseline) {
		return nil
	}
	if rev.Applied > len(rev.PartialHashes) {
		return fmt.Errorf("migration: revision %s records %d of %d statements applied but not which, so it cannot be resumed: "+
			"compare the database with the file, then correct or delete the row in %s", rev.Version, rev.Applied, rev.Total, RevisionsTable)
	}
	files, err := dir.Files()
	if err != nil {
		return fmt.Errorf("migration: list files: %w", err)
	}
	for _, f := range files {
		if f.Version() != rev.Version {
			continue
		}
		stmts, err := migrate.FileStmtDecls(drv, f)
		if err != nil {
			return fmt.Errorf("migration: %s: %w", f.Name(), err)
		}
		if rev.Applied > len(stmts) {
			return fmt.Errorf("migration: revision %s records %d statements applied, but %s now has %d, so it cannot be resumed: "+
				"restore the applied statements in the file, or correct or delete the row in %s", rev.Version, rev.Applied, f.Name(), len(stmts), RevisionsTable)
		}
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
