package migration

import (
	"context"
	"fmt"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/schema"
)

// Status is the state of a database against a migration directory.
type Status struct {
	// Applied lists the versions fully applied, or covered by a baseline.
	Applied []string `json:"applied"`
	// Pending lists the files not applied yet that apply would run, in
	// order, as the Atlas CLI counts them (with a revision whose applied
	// count is not its total).
	Pending []string `json:"pending"`
	// OutOfOrder lists the files not applied whose version is older than
	// the latest revision: apply refuses them, as the Atlas CLI does (a
	// non-linear history), until they are given a later version.
	OutOfOrder []string `json:"out_of_order"`
	// Failed lists the latest revision when it records fewer statements
	// applied than its total (and was not marked resolved), as the Atlas
	// CLI reports it; its file is not listed in Pending.
	Failed []FailedRevision `json:"failed"`
	// Unknown lists versions recorded in the database that the directory
	// does not have.
	Unknown []string `json:"unknown"`
	// Baseline is the version of the baseline revision, if any.
	Baseline string `json:"baseline,omitempty"`
	// Revisions counts the rows of the revisions table.
	Revisions int `json:"revisions"`

	outOfOrder, pending []migrate.File
}

// NonLinear returns the error apply stops with when files are
// [Status.OutOfOrder], or nil.
func (s *Status) NonLinear() error {
	if len(s.outOfOrder) == 0 {
		return nil
	}
	return fmt.Errorf("migration: find pending files: %w", &migrate.HistoryNonLinearError{OutOfOrder: s.outOfOrder, Pending: s.pending})
}

// FailedRevision is a revision that did not complete.
type FailedRevision struct {
	Version   string `json:"version"`
	File      string `json:"file,omitempty"`
	Applied   int    `json:"applied"`
	Total     int    `json:"total"`
	Error     string `json:"error,omitempty"`
	ErrorStmt string `json:"error_stmt,omitempty"`
}

// The states [Status.State] returns.
const (
	StateUpToDate = "up_to_date"
	StatePending  = "pending"
	StateFailed   = "failed"
	StateUnknown  = "unknown"
)

// State sums the status up in one word, the most serious case winning:
// [StateUnknown] when the database has versions the directory lacks, else
// [StateFailed] when a revision failed, else [StatePending] when files are
// not applied yet (in order or not, as the Atlas CLI counts them), else
// [StateUpToDate].
func (s *Status) State() string {
	switch {
	case len(s.Unknown) > 0:
		return StateUnknown
	case len(s.Failed) > 0:
		return StateFailed
	case len(s.Pending) > 0 || len(s.OutOfOrder) > 0:
		return StatePending
	default:
		return StateUpToDate
	}
}

// ReadStatus compares the revisions recorded in db (in revisionsSchema,
// default [DefaultRevisionsSchema]) with the files of dir. It changes
// nothing; a database without a revisions table has every file pending.
func ReadStatus(ctx context.Context, db schema.ExecQuerier, dir migrate.Dir, revisionsSchema string) (*Status, error) {
	revs, err := NewRevisions(db, revisionsSchema).ReadRevisions(ctx)
	if err != nil {
		return nil, err
	}
	files, err := dir.Files()
	if err != nil {
		return nil, fmt.Errorf("migration: list files: %w", err)
	}
	return statusOf(revs, files), nil
}

// statusOf reads the history as the Atlas CLI's executor and its
// "migrate status" do: the files from the latest revision on are pending
// (from the latest one itself when it is partially applied, applied !=
// total), files between the first and the latest revision that are not
// recorded were added out of order, and the others are applied (recorded,
// or older than the first revision, such as those under a baseline). The
// latest revision is failed when it records fewer statements applied than
// its total, unless it was marked resolved.
func statusOf(revs []*migrate.Revision, files []migrate.File) *Status {
	st := &Status{Applied: []string{}, Pending: []string{}, OutOfOrder: []string{}, Failed: []FailedRevision{}, Unknown: []string{}, Revisions: len(revs)}
	byVersion := make(map[string]*migrate.Revision, len(revs))
	for _, r := range revs {
		byVersion[r.Version] = r
		if r.Type.Has(migrate.RevisionTypeBaseline) && r.Version > st.Baseline {
			st.Baseline = r.Version
		}
	}
	migrations := migrate.SkipCheckpointFiles(files)
	inDir := make(map[string]bool, len(files))
	for _, f := range files {
		inDir[f.Version()] = true
	}
	for _, r := range revs {
		if !inDir[r.Version] {
			st.Unknown = append(st.Unknown, r.Version)
		}
	}
	pendingFrom := 0 // index in migrations of the first pending file
	var last *migrate.Revision
	if len(revs) > 0 {
		last = revs[len(revs)-1]
		partially := last.Applied != last.Total
		idx := migrate.FilesLastIndex(migrations, func(f migrate.File) bool {
			if partially {
				return f.Version() == last.Version
			}
			return f.Version() <= last.Version
		})
		switch {
		case idx == -1 && partially:
			// The file of a partially applied revision is missing: the
			// CLI stops there; it is listed as unknown.
			pendingFrom = len(migrations)
		case idx == -1:
			// Every file is newer than the history.
		case partially:
			pendingFrom = idx
		default:
			pendingFrom = idx + 1
		}
		if partially && idx != -1 && !last.Type.Has(migrate.RevisionTypeResolved) && last.Applied < last.Total {
			f := migrations[idx]
			total := last.Total
			if stmts, err := f.StmtDecls(); err == nil {
				total = len(stmts) // as the CLI reports it: the file's count now
			}
			st.Failed = append(st.Failed, FailedRevision{
				Version: last.Version, File: f.Name(), Applied: last.Applied, Total: total, Error: last.Error, ErrorStmt: last.ErrorStmt,
			})
		}
	}
	for i, f := range migrations {
		_, recorded := byVersion[f.Version()]
		switch {
		case i >= pendingFrom:
			if len(st.Failed) > 0 && st.Failed[0].Version == f.Version() {
				continue // listed as failed
			}
			st.Pending = append(st.Pending, f.Name())
			st.pending = append(st.pending, f)
		case !recorded && f.Version() >= revs[0].Version:
			st.OutOfOrder = append(st.OutOfOrder, f.Name())
			st.outOfOrder = append(st.outOfOrder, f)
		default:
			st.Applied = append(st.Applied, f.Version())
		}
	}
	return st
}
