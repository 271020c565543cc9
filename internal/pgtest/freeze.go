package pgtest

import (
	"context"
	"database/sql"
	"syscall"
	"testing"
)

// Freeze stops (SIGSTOP) the backend serving q, a pool with one
// connection, a *sql.Conn or a *sql.Tx, as a partition or a stalled host
// would leave a connection: the server neither answers nor closes it. It
// returns what resumes the backend, which also runs when the test ends.
// The test fails with one line when the server is not the local cluster,
// whose processes this process can signal.
func Freeze(t testing.TB, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (thaw func()) {
	t.Helper()
	if Start(t).Cluster == nil {
		t.Fatal("pgtest: Freeze stops a backend process, so it needs the local cluster: unset TEST_DATABASE_URL and DATABASE_URL")
	}
	var pid int
	if err := q.QueryRowContext(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatalf("pgtest: freeze: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("pgtest: freeze backend %d: %v", pid, err)
	}
	thaw = func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(thaw)
	return thaw
}
