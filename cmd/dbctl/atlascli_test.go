package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
	"github.com/klozd/api/migrations"
)

// The interoperability suite runs the real Atlas CLI beside dbctl on the
// same databases: each tool applies, fails, is fixed and continues after
// the other, in every --tx-mode, with and without search_path, and the
// revision rows and both tools' migrate status must agree.

// atlasCLI returns the Atlas CLI binary: $ATLAS_BIN, else atlas on PATH.
// Without either the suite does not run, and says so in one line.
func atlasCLI(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ATLAS_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("atlas"); err == nil {
		return p
	}
	t.Skip("Atlas CLI interoperability suite not run: neither $ATLAS_BIN nor atlas on PATH (.ci/run unpacks ../shared/tools/atlas-v1.2.3-linux-amd64.xz and sets ATLAS_BIN)")
	return ""
}

// TestAtlasCLI runs the suite, or says in one line why it did not run.
func TestAtlasCLI(t *testing.T) {
	bin := atlasCLI(t)
	t.Parallel()
	t.Run("Interop", func(t *testing.T) { atlasInterop(t, bin) })
	t.Run("Baseline", func(t *testing.T) { atlasBaseline(t, bin) })
	t.Run("RevisionsSchemaGuard", func(t *testing.T) { atlasRevisionsSchemaGuard(t, bin) })
}

// tool runs one of the two tools with the arguments of "migrate <cmd>".
type tool struct {
	name string
	run  func(t *testing.T, args ...string) result
}

func tools(bin string) []tool {
	atlas := func(t *testing.T, args ...string) result {
		t.Helper()
		// The CLI takes its directory as a URL.
		for i := range args {
			if i > 0 && args[i-1] == "--dir" {
				args[i] = "file://" + args[i]
			}
		}
		cmd := exec.CommandContext(t.Context(), bin, append([]string{"migrate"}, args...)...)
		cmd.Env = append(os.Environ(), "ATLAS_NO_UPDATE_NOTIFIER=1", "ATLAS_NO_UPGRADE_SUGGESTIONS=1")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run %s: %v", bin, err)
		}
		return result{code, out.String(), errOut.String()}
	}
	return []tool{
		{"dbctl", func(t *testing.T, args ...string) result {
			t.Helper()
			return dbctl(t, append([]string{"migrate"}, args...)...)
		}},
		{"atlas", atlas},
	}
}

// cliRow is a revision row without what differs by run (times) and by
// tool (operator_version); NULL shows as <NULL>.
type cliRow struct {
	Version, Description             string
	Type, Applied, Total             int
	Error, ErrorStmt, Hash, Partials string
}

func cliRows(t *testing.T, db *sql.DB, schema string) []cliRow {
	t.Helper()
	var exists bool
	require.NoError(t, db.QueryRow(`SELECT to_regclass($1) IS NOT NULL`, pq.QuoteIdentifier(schema)+".atlas_schema_revisions").Scan(&exists))
	if !exists {
		return nil
	}
	rows, err := db.Query(`SELECT version, description, type, applied, total, coalesce(error, '<NULL>'), coalesce(error_stmt, '<NULL>'),
		hash, coalesce(partial_hashes::text, '<NULL>') FROM ` + pq.QuoteIdentifier(schema) + `.atlas_schema_revisions
		WHERE version <> '.atlas_cloud_identifier' ORDER BY version`)
	require.NoError(t, err)
	defer rows.Close()
	var out []cliRow
	for rows.Next() {
		var r cliRow
		require.NoError(t, rows.Scan(&r.Version, &r.Description, &r.Type, &r.Applied, &r.Total, &r.Error, &r.ErrorStmt, &r.Hash, &r.Partials))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// statusView is what both tools' migrate status say, in common terms.
type statusView struct {
	UpToDate bool
	Pending  []string // file names the next apply runs, the failed one first
	Count    int      // statements applied of a failed latest revision
	Total    int      // statements of its file
	Failed   bool
}

func dbctlStatus(t *testing.T, args ...string) statusView {
	t.Helper()
	r := dbctl(t, append([]string{"migrate", "status", "--json"}, args...)...)
	var st statusResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st), r.stdout+r.stderr)
	v := statusView{UpToDate: st.State == "up_to_date"}
	for _, f := range st.Failed {
		v.Pending = append(v.Pending, f.File)
		v.Count, v.Total, v.Failed = f.Applied, f.Total, true
	}
	v.Pending = append(v.Pending, st.Pending...)
	return v
}

func atlasStatus(t *testing.T, atlas tool, args ...string) statusView {
	t.Helper()
	r := atlas.run(t, append([]string{"status", "--format", "{{ json . }}"}, args...)...)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	var st struct {
		Status       string
		Pending      []struct{ Name string }
		Count, Total int
		Error        string
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st), r.stdout+r.stderr)
	// The CLI reports the count and total of a latest revision with
	// fewer statements applied than its total, with its error if any:
	// dbctl calls that revision failed.
	v := statusView{UpToDate: st.Status == "OK", Failed: st.Total > 0, Count: st.Count, Total: st.Total}
	for _, p := range st.Pending {
		v.Pending = append(v.Pending, p.Name)
	}
	return v
}

// sameStatus asserts that both tools read the database alike, and returns
// what they read.
func sameStatus(t *testing.T, atlas tool, args ...string) statusView {
	t.Helper()
	d, a := dbctlStatus(t, args...), atlasStatus(t, atlas, args...)
	assert.Equal(t, a, d, "dbctl's status (actual) and the Atlas CLI's (expected)")
	return d
}

const interopFile = "20260201000000_interop.sql"

// interopBody is a file of n statements; the second fails when broken.
func interopBody(n int, broken bool) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE \"interop_a\" (\"id\" text);\n")
	if broken {
		b.WriteString("ALTER TABLE \"no_such_table\" ADD COLUMN \"x\" integer;\n")
	} else {
		b.WriteString("CREATE TABLE \"interop_b\" (\"id\" text);\n")
	}
	for i := 3; i <= n; i++ {
		fmt.Fprintf(&b, "CREATE TABLE \"interop_%d\" (\"id\" text);\n", i)
	}
	return b.String()
}

func rehash(t *testing.T, dir string, name, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	require.Equal(t, exitOK, dbctl(t, "migrate", "hash", "--dir", dir).code)
}

// atlasInterop: a tool applies a directory whose latest file fails,
// the file is fixed (keeping its first statement, with 3, 2 or 4
// statements), and a tool continues: after each step the revision rows
// are the ones the Atlas CLI alone leaves, and both tools' status agree.
func atlasInterop(t *testing.T, bin string) {
	t.Parallel()
	ts := tools(bin)
	atlas := ts[1]
	type scenario struct {
		mode string
		fix  int // statements of the fixed file
	}
	scenarios := []scenario{{"file", 3}, {"all", 3}, {"none", 3}, {"none", 2}, {"none", 4}}
	for _, sc := range scenarios {
		for _, searchPath := range []bool{false, true} {
			name := fmt.Sprintf("%s/fix%d/search_path=%v", sc.mode, sc.fix, searchPath)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var (
					mu       sync.Mutex
					wg       sync.WaitGroup
					outcomes = map[string]interopOutcome{}
				)
				// The four orders run at once: t.Run without t.Parallel
				// from goroutines, as each mostly waits on the server.
				for _, first := range ts {
					for _, next := range ts {
						wg.Add(1)
						go func() {
							// Done once t.Run has returned, the subtest's
							// cleanups (its database's removal) included.
							defer wg.Done()
							t.Run(first.name+" then "+next.name, func(t *testing.T) {
								o, ok := interopRun(t, atlas, first, next, sc.mode, sc.fix, searchPath)
								if ok {
									mu.Lock()
									outcomes[first.name+" then "+next.name] = o
									mu.Unlock()
								}
							})
						}()
					}
				}
				wg.Wait()
				ref, ok := outcomes["atlas then atlas"]
				if !ok {
					ref = outcomes["dbctl then dbctl"]
				}
				require.NotEmpty(t, outcomes)
				for k, o := range outcomes {
					assert.Equal(t, ref.failed, o.failed, "%s: rows after the failure", k)
					assert.Equal(t, ref.fixed, o.fixed, "%s: rows after the fix", k)
				}
			})
		}
	}
}

type interopOutcome struct{ failed, fixed []cliRow }

// interopRun: first applies the broken file and fails, the file is fixed
// with fix statements, next applies it; the rows after each step, and
// false when the CLI reached its known dead end.
func interopRun(t *testing.T, atlas, first, next tool, mode string, fix int, searchPath bool) (interopOutcome, bool) {
	// After a failure without a transaction, a fix that changes the
	// file's statement count leaves the CLI's revision unfinished
	// (applied != total), whoever failed: dbctl records the file's new
	// count instead.
	cliWedges := mode == "none" && fix != 3 && next.name == "atlas"
	url, schema := pgtest.EmptyURL(t), "atlas_schema_revisions"
	if searchPath {
		url, schema = withParam(t, url, "search_path", "public"), "public"
	}
	dir := migrationsDir(t, map[string]string{interopFile: interopBody(3, true)})
	db := pgtest.Open(t, url)
	r := first.run(t, "apply", "--url", url, "--dir", dir, "--tx-mode", mode)
	require.NotEqual(t, 0, r.code, "%s apply: %s", first.name, r.stdout+r.stderr)
	failed := cliRows(t, db, schema)
	st := sameStatus(t, atlas, "--url", url, "--dir", dir)
	assert.False(t, st.UpToDate)

	rehash(t, dir, interopFile, interopBody(fix, false))
	r = next.run(t, "apply", "--url", url, "--dir", dir, "--tx-mode", mode)
	require.Equal(t, 0, r.code, "%s apply after %s: %s", next.name, first.name, r.stdout+r.stderr)
	fixed := cliRows(t, db, schema)
	st = sameStatus(t, atlas, "--url", url, "--dir", dir)
	last := fixed[len(fixed)-1]
	if cliWedges {
		assert.NotEqual(t, last.Applied, last.Total, "the CLI's known dead end")
		assert.False(t, st.UpToDate)
		return interopOutcome{}, false
	}
	assert.True(t, st.UpToDate, "%s after %s: %+v", next.name, first.name, st)
	assert.Equal(t, fix, last.Applied)
	assert.Equal(t, fix, last.Total)
	// Nothing is left for the other tool either.
	other := atlas
	if next.name == "atlas" {
		other = first
		if first.name == "atlas" {
			return interopOutcome{failed, fixed}, true
		}
	}
	r = other.run(t, "apply", "--url", url, "--dir", dir, "--tx-mode", mode)
	require.Equal(t, 0, r.code, "%s: %s", other.name, r.stdout+r.stderr)
	assert.Equal(t, fixed, cliRows(t, db, schema), "a run with nothing pending changes no row")
	return interopOutcome{failed, fixed}, true
}

// A baseline revision is the CLI's, with and without search_path.
func atlasBaseline(t *testing.T, bin string) {
	t.Parallel()
	ts := tools(bin)
	dev := devURL(t)
	first, err := migrations.FS.ReadFile(firstFile)
	require.NoError(t, err)
	for _, searchPath := range []bool{false, true} {
		t.Run(fmt.Sprintf("search_path=%v", searchPath), func(t *testing.T) {
			t.Parallel()
			var rows [][]cliRow
			for _, tl := range ts {
				url, schema := pgtest.EmptyURL(t), "atlas_schema_revisions"
				if searchPath {
					url, schema = withParam(t, url, "search_path", "public"), "public"
				}
				db := pgtest.Open(t, url)
				_, err := db.Exec(string(first)) // migrated by other means
				require.NoError(t, err)
				dir := migrationsDir(t, map[string]string{interopFile: interopBody(3, false)})
				args := []string{"apply", "--url", url, "--dir", dir, "--baseline", firstFile[:14]}
				if tl.name == "dbctl" {
					args = append(args, "--dev-url", dev)
				}
				r := tl.run(t, args...)
				require.Equal(t, 0, r.code, "%s: %s", tl.name, r.stdout+r.stderr)
				rows = append(rows, cliRows(t, db, schema))
				st := sameStatus(t, ts[1], "--url", url, "--dir", dir)
				assert.True(t, st.UpToDate)
			}
			require.Len(t, rows[0], 2)
			assert.Equal(t, 1, rows[0][0].Type, "baseline")
			assert.Equal(t, rows[1], rows[0], "dbctl's rows (actual) and the CLI's (expected)")
		})
	}
}

// With revisions in atlas_schema_revisions and a URL with search_path,
// both tools refuse, name --revisions-schema and create nothing; with the
// flag both find the revisions.
func atlasRevisionsSchemaGuard(t *testing.T, bin string) {
	t.Parallel()
	ts := tools(bin)
	url := pgtest.EmptyURL(t)
	dir := migrationsDir(t, nil)
	require.Equal(t, exitOK, dbctl(t, "migrate", "apply", "--url", url, "--dir", dir).code)
	scoped := withParam(t, url, "search_path", "public")
	db := pgtest.Open(t, url)
	for _, tl := range ts {
		for _, cmd := range []string{"status", "apply"} {
			r := tl.run(t, cmd, "--url", scoped, "--dir", dir)
			assert.NotEqual(t, 0, r.code, "%s %s: %s", tl.name, cmd, r.stdout+r.stderr)
			assert.Contains(t, r.stdout+r.stderr, "--revisions-schema", "%s %s", tl.name, cmd)
			if tl.name == "dbctl" {
				assert.Equal(t, 1, lines(r.stderr), "one line: %q", r.stderr)
				assert.Contains(t, r.stderr, "ambiguous revision table")
			}
			assert.Nil(t, cliRows(t, db, "public"), "%s %s created no revisions table in public", tl.name, cmd)
		}
	}
	st := sameStatus(t, ts[1], "--url", scoped, "--dir", dir, "--revisions-schema", "atlas_schema_revisions")
	assert.True(t, st.UpToDate)
	for _, tl := range ts {
		r := tl.run(t, "apply", "--url", scoped, "--dir", dir, "--revisions-schema", "atlas_schema_revisions")
		assert.Equal(t, 0, r.code, "%s: %s", tl.name, r.stdout+r.stderr)
	}
	assert.Nil(t, cliRows(t, db, "public"))
}
