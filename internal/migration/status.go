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
	// Pending lists the files not applied yet that apply would run, in order.
	Pending []string `json:"pending"`
	// OutOfOrder lists the files not applied whose version is older than
	// the latest revision: apply refuses them, as the Atlas CLI does (a
	// non-linear history), until they are given a later version.
	OutOfOrder []string `json:"out_of_order"`
	// Failed lists the versions whose revision records an error or fewer
	// statements applied than the file has.
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

func statusOf(revs []*migrate.Revision, files []migrate.File) *Status {
	st := &Status{Applied: []string{}, Pending: []string{}, OutOfOrder: []string{}, Failed: []FailedRevision{}, Unknown: []string{}, Revisions: len(revs)}
	// As the executor reads the history: a file older than the latest
	// revision (and not older than the first) that is not recorded was
	// added out of order.
	var first, last string
	if len(revs) > 0 {
		first, last = revs[0].Version, revs[len(revs)-1].Version
	}
	byVersion := make(map[string]*migrate.Revision, len(revs))
	for _, r := range revs {
		byVersion[r.Version] = r
		if r.Type.Has(migrate.RevisionTypeBaseline) && r.Version > st.Baseline {
			st.Baseline = r.Version
		}
	}
	inDir := make(map[string]bool, len(files))
	for _, f := range files {
		inDir[f.Version()] = true
		r, ok := byVersion[f.Version()]
		switch {
		case ok && r.Type.Has(migrate.RevisionTypeBaseline):
			st.Applied = append(st.Applied, f.Version())
		case ok && (r.Error != "" || r.Applied < r.Total):
			st.Failed = append(st.Failed, FailedRevision{
				Version: r.Version, File: f.Name(), Applied: r.Applied, Total: r.Total, Error: r.Error, ErrorStmt: r.ErrorStmt,
			})
		case ok:
			st.Applied = append(st.Applied, f.Version())
		case st.Baseline != "" && f.Version() <= st.Baseline:
			// Covered by the baseline, as the Atlas CLI counts it.
			st.Applied = append(st.Applied, f.Version())
		case last != "" && f.Version() >= first && f.Version() < last:
			st.OutOfOrder = append(st.OutOfOrder, f.Name())
			st.outOfOrder = append(st.outOfOrder, f)
		default:
			st.Pending = append(st.Pending, f.Name())
			st.pending = append(st.pending, f)
		}
	}
	for _, r := range revs {
		if !inDir[r.Version] {
			st.Unknown = append(st.Unknown, r.Version)
		}
	}
	return st
}
