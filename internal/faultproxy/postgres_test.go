package faultproxy_test

import (
	"context"
	"database/sql"
	"net"
	"net/url"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/klozd/api/internal/faultproxy"
	"github.com/klozd/api/internal/pgtest"
)

// proxiedDB returns a test database's pool that connects through a fault
// proxy in front of the server, with at most one connection.
func proxiedDB(t *testing.T) (*faultproxy.Proxy, *sql.DB) {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	p := startProxy(t, net.JoinHostPort(host, port))
	u.Host = p.Addr()
	db, err := sql.Open("postgres", u.String())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() }) // before the proxy closes
	return p, db
}

func backendPID(t *testing.T, db *sql.DB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var pid int
	if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("query through the proxy: %v", err)
	}
	return pid
}

// stalledQuery starts a query with a 300 ms deadline while p is stalled,
// checks that it has not completed when a separate 600 ms timer fires, and
// returns the channel its result arrives on.
func stalledQuery(t *testing.T, p *faultproxy.Proxy, db *sql.DB) <-chan error {
	t.Helper()
	p.Stall()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		var one int
		done <- db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	}()
	timer := time.NewTimer(600 * time.Millisecond)
	defer timer.Stop()
	select {
	case err := <-done:
		t.Fatalf("a query completed through a stalled proxy: %v", err)
	case <-timer.C:
	}
	return done
}

func ended(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(patience):
		t.Fatal("the stalled query did not end")
		return nil
	}
}

func TestPostgres(t *testing.T) {
	p, db := proxiedDB(t)
	first := backendPID(t, db)
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns() = %d, want 1", n)
	}

	t.Run("stall then heal", func(t *testing.T) {
		done := stalledQuery(t, p, db)
		p.Heal()
		// Its deadline has passed: lib/pq may return the row or the
		// cancellation; either way it ends.
		t.Logf("stalled query, healed: %v", ended(t, done))
		backendPID(t, db)
	})

	t.Run("stall then reset", func(t *testing.T) {
		done := stalledQuery(t, p, db)
		p.ResetAll()
		if err := ended(t, done); err == nil {
			t.Fatal("a query whose connection was reset succeeded")
		}
		p.Heal()
		backendPID(t, db)
	})

	t.Run("reset an idle connection", func(t *testing.T) {
		before := backendPID(t, db)
		p.ResetAll()
		// The pool learns of the reset from the first query on the dead
		// connection, which may fail; the next runs on a new one.
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		var after int
		err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&after)
		if err != nil {
			t.Logf("first query after ResetAll: %v", err)
			after = backendPID(t, db)
		}
		if after == before || after == first {
			t.Fatalf("backend %d after ResetAll, want a new one (before %d)", after, before)
		}
	})
}
