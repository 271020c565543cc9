package migration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"ariga.io/atlas/schemahcl"
	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	_ "ariga.io/atlas/sql/postgres/postgrescheck" // Registers the PostgreSQL analyzers.
	"ariga.io/atlas/sql/schema"
	"ariga.io/atlas/sql/sqlcheck"
	"ariga.io/atlas/sql/sqlclient"
)

// NolintDirective is the comment that silences lint findings, the Atlas
// CLI's own directive, so both tools agree:
//
//	-- atlas:nolint destructive
//	ALTER TABLE "t" DROP COLUMN "c";
//
// Above a statement it applies to that statement; at the top of a file,
// followed by an empty line, to every statement of the file. It may name
// analyzers (destructive, data_depend, incompatible, condrop) or codes
// (DS103); bare, it silences everything.
const NolintDirective = "atlas:nolint"

// LintOptions configure [Lint].
type LintOptions struct {
	// Latest is how many of the last files to analyze. Default: 1.
	Latest int
	// DevURL is an empty scratch database the directory is replayed on.
	DevURL string
}

// Finding is one diagnostic of an analyzer.
type Finding struct {
	File      string `json:"file"`
	Analyzer  string `json:"analyzer"`
	Code      string `json:"code"`
	Text      string `json:"text"`
	Statement string `json:"statement"`
	// Destructive findings fail the lint unless silenced.
	Destructive bool `json:"destructive"`
	// Silenced is true when a nolint directive covers the finding.
	Silenced bool `json:"silenced"`
}

// LintReport is the outcome of [Lint].
type LintReport struct {
	Files    []string  `json:"files"`
	Findings []Finding `json:"findings"`
}

// Failed reports whether a destructive finding is not silenced.
func (r *LintReport) Failed() bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Destructive && !f.Silenced })
}

// ErrDevDatabase wraps the errors of [Lint] that come from the dev database
// itself (it cannot be opened or inspected), not from the files.
var ErrDevDatabase = errors.New("migration: lint: the dev database cannot be used")

// Lint runs the Atlas library's PostgreSQL analyzers (destructive,
// data-dependent, backward-incompatible and constraint-drop changes) over
// the latest files of dir, as "atlas migrate lint --latest N" does: the
// earlier files are replayed on the dev database, then each statement of
// the analyzed files is executed and the schema inspected around it, so the
// analyzers see the change each statement makes.
func Lint(ctx context.Context, dir migrate.Dir, opts LintOptions) (*LintReport, error) {
	if err := Validate(dir); err != nil {
		return nil, err
	}
	latest := opts.Latest
	if latest <= 0 {
		latest = 1
	}
	files, err := dir.Files()
	if err != nil {
		return nil, fmt.Errorf("migration: list files: %w", err)
	}
	latest = min(latest, len(files))
	base, targets := files[:len(files)-latest], files[len(files)-latest:]
	dev, err := sqlclient.Open(ctx, opts.DevURL)
	if err != nil {
		return nil, fmt.Errorf("%w: open: %w", ErrDevDatabase, err)
	}
	defer dev.Close()
	for _, f := range base {
		if err := execFile(ctx, dev, f); err != nil {
			return nil, err
		}
	}
	analyzers, err := sqlcheck.AnalyzerFor(postgres.DriverName, &schemahcl.Resource{})
	if err != nil {
		return nil, fmt.Errorf("migration: lint: %w", err)
	}
	report := &LintReport{Files: []string{}, Findings: []Finding{}}
	for _, f := range targets {
		report.Files = append(report.Files, f.Name())
		file, err := loadChanges(ctx, dev, f)
		if err != nil {
			return nil, err
		}
		rules := nolintRules(file)
		for _, az := range analyzers {
			name := analyzerName(az)
			var reports []sqlcheck.Report
			pass := &sqlcheck.Pass{File: file, Dev: dev, Reporter: sqlcheck.ReportWriterFunc(func(r sqlcheck.Report) {
				reports = append(reports, r)
			})}
			// Analyzers configured to "error" return one after reporting;
			// the reports decide here.
			if err := az.Analyze(ctx, pass); err != nil && len(reports) == 0 {
				return nil, fmt.Errorf("migration: lint %s: %s: %w", f.Name(), name, err)
			}
			for _, r := range reports {
				for _, d := range r.Diagnostics {
					report.Findings = append(report.Findings, Finding{
						File: f.Name(), Analyzer: name, Code: d.Code, Text: d.Text,
						Statement:   stmtAt(file, d.Pos),
						Destructive: name == "destructive",
						Silenced:    rules.silences(d.Pos, name, d.Code),
					})
				}
			}
		}
	}
	return report, nil
}

func analyzerName(az sqlcheck.Analyzer) string {
	if n, ok := az.(sqlcheck.NamedAnalyzer); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", az)
}

func execFile(ctx context.Context, dev *sqlclient.Client, f migrate.File) error {
	stmts, err := f.Stmts()
	if err != nil {
		return fmt.Errorf("migration: %s: %w", f.Name(), err)
	}
	for _, s := range stmts {
		if _, err := dev.ExecContext(ctx, s); err != nil {
			return &FileError{File: f.Name(), Stmt: s, Err: err}
		}
	}
	return nil
}

// loadChanges executes f on dev statement by statement and records the
// change each one makes, as the Atlas CLI's dev loader does.
func loadChanges(ctx context.Context, dev *sqlclient.Client, f migrate.File) (*sqlcheck.File, error) {
	stmts, err := f.StmtDecls()
	if err != nil {
		return nil, fmt.Errorf("migration: %s: %w", f.Name(), err)
	}
	inspect := func() (*schema.Realm, error) {
		r, err := dev.InspectRealm(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: inspect: %w", ErrDevDatabase, err)
		}
		return r, nil
	}
	from, err := inspect()
	if err != nil {
		return nil, err
	}
	file := &sqlcheck.File{File: f, From: from}
	cur := from
	for _, s := range stmts {
		if _, err := dev.ExecContext(ctx, s.Text); err != nil {
			return nil, &FileError{File: f.Name(), Stmt: s.Text, Err: err}
		}
		next, err := inspect()
		if err != nil {
			return nil, err
		}
		diff, err := dev.RealmDiff(cur, next)
		if err != nil {
			return nil, fmt.Errorf("migration: lint: diff: %w", err)
		}
		file.Changes = append(file.Changes, &sqlcheck.Change{Changes: diff, Stmt: s})
		cur = next
	}
	file.To = cur
	if file.Sum, err = dev.RealmDiff(from, cur); err != nil {
		return nil, fmt.Errorf("migration: lint: diff: %w", err)
	}
	return file, nil
}

func stmtAt(f *sqlcheck.File, pos int) string {
	for _, c := range f.Changes {
		if c.Stmt.Pos == pos {
			return strings.TrimSpace(c.Stmt.Text)
		}
	}
	return ""
}

// skipRules are the nolint directives of one file, by the Atlas CLI's rules.
type skipRules struct {
	file bool             // a bare file directive: silence everything
	pos  map[int][]string // statement position → analyzers or codes; empty: all
}

func nolintRules(f *sqlcheck.File) *skipRules {
	s := &skipRules{pos: map[int][]string{}}
	add := func(pos int, d string) {
		if _, ok := s.pos[pos]; !ok {
			s.pos[pos] = []string{}
		}
		if d = strings.TrimSpace(d); d == "" {
			s.pos[pos] = append(s.pos[pos], "")
			return
		}
		s.pos[pos] = append(s.pos[pos], strings.Fields(d)...)
	}
	if l, ok := f.File.(interface{ Directive(string) []string }); ok {
		ds := l.Directive("nolint")
		if len(ds) == 1 && strings.TrimSpace(ds[0]) == "" {
			s.file = true
			return s
		}
		for _, d := range ds {
			for _, c := range f.Changes {
				add(c.Stmt.Pos, d)
			}
		}
	}
	for _, c := range f.Changes {
		for _, d := range c.Stmt.Directive("nolint") {
			add(c.Stmt.Pos, d)
		}
	}
	return s
}

func (s *skipRules) silences(pos int, analyzer, code string) bool {
	if s.file {
		return true
	}
	rules, ok := s.pos[pos]
	if !ok {
		return false
	}
	for _, r := range rules {
		if r == "" || r == analyzer || strings.EqualFold(r, code) {
			return true
		}
	}
	return false
}
