package migration

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/lib/pq"
)

// ErrPooled is returned by [CheckSession] and [Apply] when the connection
// goes through a pooler that hands the server session to other clients
// between transactions, as PgBouncer does with pool_mode=transaction: there
// a session-level advisory lock stays behind on a backend another client
// gets next, two runs can both hold it at once, and lib/pq's unnamed
// prepared statements vanish between their two round trips. Migrations
// need a direct connection to PostgreSQL (or a session-pooled one).
var ErrPooled = errors.New("migration: the connection goes through a transaction pooler")

// sessionProbes is how many times [checkSession] tries to catch a pooler
// handing the session's backend to another client. On a quiet PgBouncer
// the first try catches it. With four probes at once beside four clients
// running statements nonstop on the same pool, one try missed it 4 times
// in 800 in our measurements, and ten tries never (0 in 800, nor in the
// test suite's repeated runs). On a direct or session-pooled connection no
// try can catch anything, so more tries only cost round trips (five each).
const sessionProbes = 10

// probeHold bounds how long the probe's second transaction holds its
// server while the session waits for one: on an exhausted pool nothing
// else would free one for it.
const probeHold = time.Second

// CheckSession returns an error wrapping [ErrPooled] when db's connections
// go through a transaction pooler, and nil on a direct connection or a
// session-pooled one, where a session keeps its backend until it closes.
// It sends only parameterless statements, which a pooler runs whole, and
// needs two connections of db at once.
func CheckSession(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migration: probe the session: %w", err)
	}
	defer conn.Close()
	_, err = checkSession(ctx, db, conn)
	return err
}

// checkSession probes whether conn keeps one server backend, and returns
// its pid. On a direct or session-pooled connection a backend serves one
// client session for its whole life, so no other connection of db can ever
// run on conn's backend and conn's backend never changes: no answer of the
// probe can be mistaken for pooling. A transaction pooler returns conn's
// backend to the pool after each statement outside a transaction and
// hands the most recently released one out first (PgBouncer's default): a
// transaction begun on another connection just after a statement on conn
// runs on conn's backend, and conn's next statement, while that
// transaction holds it, runs on another one. Either sighting proves
// pooling; other clients of the pool can hide both from one try, hence the
// [sessionProbes] tries.
func checkSession(ctx context.Context, db *sql.DB, conn *sql.Conn) (int, error) {
	var first int
	for i := range sessionProbes {
		mark := fmt.Sprintf(`SELECT pg_backend_pid() AS session_probe_%d`, rand.Int64())
		p0, err := backendPID(ctx, conn, mark)
		if err != nil {
			return 0, err
		}
		if i == 0 {
			first = p0
		} else if p0 != first {
			return 0, pooled(first, p0)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return 0, fmt.Errorf("migration: probe the session: begin a second transaction: %w", err)
		}
		var other int
		var last string
		err = tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT pg_backend_pid(), coalesce((SELECT query FROM pg_stat_activity WHERE pid = %d), '')`, p0)).
			Scan(&other, &last)
		switch {
		case err != nil:
			_ = tx.Rollback()
			return 0, fmt.Errorf("migration: probe the session: %w", err)
		case other == p0:
			_ = tx.Rollback()
			return 0, fmt.Errorf("%w: another connection's transaction ran on this session's backend %d", ErrPooled, p0)
		case last != mark && last != "" && last != "<insufficient privilege>":
			// An idle session's backend shows the session's last
			// statement; this one ran another client's since.
			_ = tx.Rollback()
			return 0, fmt.Errorf("%w: this session's backend %d ran another client's statement while the session was idle", ErrPooled, p0)
		}
		// Were the pool exhausted, conn would wait for the server the
		// transaction holds: release it after probeHold. conn's backend
		// changing is proof whenever it happens.
		release := time.AfterFunc(probeHold, func() { _ = tx.Rollback() })
		p1, err := backendPID(ctx, conn, `SELECT pg_backend_pid()`)
		release.Stop()
		_ = tx.Rollback()
		if err != nil {
			return 0, err
		}
		if p1 != p0 {
			return 0, pooled(p0, p1)
		}
	}
	return first, nil
}

func pooled(p0, p1 int) error {
	return fmt.Errorf("%w: statements of one session ran on backends %d and %d", ErrPooled, p0, p1)
}

// backendPID returns the pid of the backend that runs query, a
// parameterless SELECT pg_backend_pid(), which lib/pq sends in one round
// trip.
func backendPID(ctx context.Context, conn *sql.Conn, query string) (int, error) {
	var pid int
	if err := conn.QueryRowContext(ctx, query).Scan(&pid); err != nil {
		return 0, fmt.Errorf("migration: probe the session: %w", err)
	}
	return pid, nil
}

// lockKey is the advisory lock key of name as the Atlas CLI's PostgreSQL
// driver derives it (FNV-1 32 of the name, taken as a bigint), so that
// dbctl and the CLI exclude each other.
func lockKey(name string) int64 {
	h := fnv.New32()
	h.Write([]byte(name))
	return int64(h.Sum32())
}

// sessionLock is the migration lock held by one dedicated session.
type sessionLock struct {
	db   *sql.DB
	conn *sql.Conn
	pid  int // the backend of conn
	key  int64
}

// takeLock checks that db's sessions keep their backend, then takes the
// advisory lock name on a dedicated session, waiting up to timeout for a
// concurrent holder, and checks that the backend holding it is the
// session's. On error nothing is held.
func takeLock(ctx context.Context, db *sql.DB, name string, timeout time.Duration) (*sessionLock, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration: take migration lock: %w", err)
	}
	pid, err := checkSession(ctx, db, conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	l := &sessionLock{db: db, conn: conn, pid: pid, key: lockKey(name)}
	if err := l.acquire(ctx, timeout); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := l.verify(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// verify checks that the lock, just taken, is held by the session's
// backend alone. When it is not, it releases it (see [sessionLock.wrongHolder])
// and closes the session.
func (l *sessionLock) verify(ctx context.Context) error {
	if holders, current, err := l.holders(ctx); err != nil || current != l.pid || len(holders) != 1 || holders[0] != l.pid {
		return errors.Join(l.wrongHolder(ctx, holders, current, err), l.discard())
	}
	return nil
}

// acquire polls pg_try_advisory_lock, as the Atlas CLI does, so that a
// waiting run never holds up the DDL of the running one.
func (l *sessionLock) acquire(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := 25 * time.Millisecond
	for {
		var got bool
		// The key is a literal: a statement without parameters takes one
		// round trip.
		err := l.conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT pg_try_advisory_lock(%d)`, l.key)).Scan(&got)
		switch {
		case err != nil:
			return fmt.Errorf("migration: take migration lock: %w", err)
		case got:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("%w (waited %s)", ErrLocked, timeout)
		}
		t := time.NewTimer(wait + rand.N(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("migration: take migration lock: %w", ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// holders returns the backends of this database that hold the lock, and
// the backend that ran the query: the session's, unless a pooler moved it.
func (l *sessionLock) holders(ctx context.Context) (pids []int, current int, err error) {
	var held pq.Int64Array
	err = l.conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT pg_backend_pid(), coalesce(array_agg(pid ORDER BY pid), '{}') FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = %d AND objsubid = 1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, l.key)).Scan(&current, &held)
	if err != nil {
		return nil, 0, fmt.Errorf("migration: read the migration lock's holder: %w", err)
	}
	for _, pid := range held {
		pids = append(pids, int(pid))
	}
	return pids, current, nil
}

// wrongHolder is the error for a lock that this session's backend does not
// hold alone right after taking it: the statement that took it ran on a
// backend the session no longer has, which only a pooler does. That
// backend took the lock for this run a moment ago; it is terminated so that
// the lock does not stay behind on an idle pooled connection.
func (l *sessionLock) wrongHolder(ctx context.Context, holders []int, current int, err error) error {
	if err != nil {
		return err
	}
	if current != l.pid {
		err = fmt.Errorf("%w: the session's statements ran on backends %d and %d, and backend(s) %v hold the migration lock", ErrPooled, l.pid, current, holders)
	} else {
		err = fmt.Errorf("%w: the migration lock was taken by backend(s) %v, not by this session's backend %d", ErrPooled, holders, l.pid)
	}
	var msgs []string
	for _, pid := range holders {
		if pid == current {
			continue // ended with the session, by discard
		}
		if _, terr := l.db.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`SELECT pg_terminate_backend(%d)`, pid)); terr != nil {
			msgs = append(msgs, fmt.Sprintf("backend %d still holds it and could not be terminated (%v): end it with SELECT pg_terminate_backend(%d)", pid, terr, pid))
		}
	}
	if len(msgs) > 0 {
		err = fmt.Errorf("%w; %s", err, strings.Join(msgs, "; "))
	}
	return err
}

// unlockTimeout bounds the release of the lock, which runs even after the
// caller's context ended.
const unlockTimeout = 10 * time.Second

// release checks that the session still holds the lock and releases it.
// On any failure it closes the session, which makes the server release
// whatever lock it still holds, and returns an error saying so.
func (l *sessionLock) release(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	err := l.unlock(ctx)
	if err == nil {
		if err := l.conn.Close(); err != nil {
			return &UnlockError{Key: l.key, Err: err}
		}
		return nil
	}
	return &UnlockError{Key: l.key, Err: errors.Join(err, l.discard())}
}

func (l *sessionLock) unlock(ctx context.Context) error {
	holders, current, err := l.holders(ctx)
	if err != nil {
		return err
	}
	if current != l.pid || len(holders) != 1 || holders[0] != l.pid {
		return fmt.Errorf("the session's backend %d no longer holds it (the check ran on backend %d; holders now: %v)", l.pid, current, holders)
	}
	var released bool
	if err := l.conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT pg_advisory_unlock(%d)`, l.key)).Scan(&released); err != nil {
		return err
	}
	if !released {
		return errors.New("pg_advisory_unlock returned false")
	}
	return nil
}

// discard closes the session's server connection instead of returning it
// to db's pool, so that a lock it may still hold is released with it.
func (l *sessionLock) discard() error {
	_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
	if err := l.conn.Close(); err != nil && !errors.Is(err, sql.ErrConnDone) {
		return err
	}
	return nil
}

// UnlockError is returned by [Apply], joined with the run's own error if
// any, when the migration lock could not be released as it should. The
// session that took it is closed, which releases a lock it still held;
// what the run applied stays applied.
type UnlockError struct {
	Key int64 // the advisory lock key
	Err error
}

func (e *UnlockError) Error() string {
	return fmt.Sprintf("migration: release migration lock: %v; the session that took it was closed, which releases it: "+
		"if pg_locks still shows advisory lock %d held in this database, end that backend with pg_terminate_backend", e.Err, e.Key)
}

func (e *UnlockError) Unwrap() error { return e.Err }
