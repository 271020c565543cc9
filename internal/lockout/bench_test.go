package lockout_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klozd/api/ent/schema"
	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgcluster"
	"github.com/klozd/api/internal/pgtest"
)

// The baselines are the hand-written minimal SQL for the same work,
// through database/sql and lib/pq on the same database: a pair lock read
// plus plain per-email and per-IP sums for Check; an upsert that counts and
// locks at 5 and returns the row with the plain per-email and per-IP sums
// of the other rows for RecordFailure. "baseline" sends the
// SQL at each call, as a hand-written version typically does (lib/pq then
// parses it in a round trip of its own); "baseline-prepared" prepares it
// once, as the service does, to compare the SQL alone.
const (
	baselineCheck = `SELECT
		(SELECT "lockedUntil" FROM auth_attempts WHERE email = $1 AND ip = $2 AND "lockedUntil" > $3),
		(SELECT coalesce(sum("failuresCount"), 0) FROM auth_attempts WHERE email = $1 AND "lastAttemptAt" > $4),
		(SELECT coalesce(sum("failuresCount"), 0) FROM auth_attempts WHERE ip = $2 AND "lastAttemptAt" > $4)`
	baselineFailure = `INSERT INTO auth_attempts AS a (id, email, ip, "failuresCount", "lastAttemptAt", "createdAt", "updatedAt")
		VALUES ($1, $2, $3, 1, $4, $4, $4)
		ON CONFLICT (email, ip) DO UPDATE SET
			"failuresCount" = a."failuresCount" + 1,
			"lockedUntil" = CASE WHEN a."failuresCount" + 1 >= 5 THEN $4::timestamp + interval '15 minutes' ELSE a."lockedUntil" END,
			"lastAttemptAt" = $4, "updatedAt" = $4
		RETURNING "failuresCount", "lockedUntil",
			(SELECT coalesce(sum("failuresCount"), 0) FROM auth_attempts o WHERE o.email = $2 AND o.ip <> $3 AND o."lastAttemptAt" > $5),
			(SELECT coalesce(sum("failuresCount"), 0) FROM auth_attempts o WHERE o.ip = $3 AND o.email <> $2 AND o."lastAttemptAt" > $5)`
)

const benchKeys = 10000

// benchURL is the database of the last benchSetup.
var benchURL string

func benchKey(i int) (email, ip string) {
	return fmt.Sprintf("user%d@example.org", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
}

// benchSetup returns a pool on a fresh database holding benchKeys rows
// (recent failures, none locked) and a service on it.
func benchSetup(b *testing.B) (*sql.DB, *lockout.Service) {
	benchURL = pgtest.URL(b)
	db := pgtest.Open(b, benchURL)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	now := schema.UTCMillis(time.Now())
	_, err := db.Exec(`INSERT INTO auth_attempts (id, email, ip, "failuresCount", "lastAttemptAt", "createdAt", "updatedAt")
		SELECT 'seed' || i, 'user' || i || '@example.org', '10.' || (i >> 16 & 255) || '.' || (i >> 8 & 255) || '.' || (i & 255),
			i % 4 + 1, $1, $1, $1
		FROM generate_series(0, $2 - 1) i`, now, benchKeys)
	require.NoError(b, err)
	_, err = db.Exec(`ANALYZE auth_attempts`)
	require.NoError(b, err)
	s, err := lockout.New(db, lockout.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	return db, s
}

func BenchmarkCheck(b *testing.B) {
	db, s := benchSetup(b)
	ctx := context.Background()
	service := func(email, ip string) error {
		_, err := s.Check(ctx, email, ip)
		return err
	}
	prepared, err := db.Prepare(baselineCheck)
	require.NoError(b, err)
	baseline := func(q func(context.Context, ...any) *sql.Row) func(email, ip string) error {
		return func(email, ip string) error {
			now := schema.UTCMillis(time.Now())
			var locked sql.NullTime
			var byEmail, byIP int
			return q(ctx, email, ip, now, now.Add(-15*time.Minute)).Scan(&locked, &byEmail, &byIP)
		}
	}
	plain := func(ctx context.Context, args ...any) *sql.Row {
		return db.QueryRowContext(ctx, baselineCheck, args...)
	}
	runImpls(b, []benchImpl{{"service", service}, {"baseline", baseline(plain)}, {"baseline-prepared", baseline(prepared.QueryRowContext)}},
		func(i int) (string, string) { return benchKey(i % benchKeys) },
		func() (string, string) { return benchKey(7) })
}

var benchSeq atomic.Int64

func BenchmarkRecordFailure(b *testing.B) {
	db, s := benchSetup(b)
	ctx := context.Background()
	service := func(email, ip string) error {
		_, err := s.RecordFailure(ctx, email, ip)
		return err
	}
	prepared, err := db.Prepare(baselineFailure)
	require.NoError(b, err)
	baseline := func(q func(context.Context, ...any) *sql.Row) func(email, ip string) error {
		return func(email, ip string) error {
			now := schema.UTCMillis(time.Now())
			var n, byEmail, byIP int
			var locked sql.NullTime
			return q(ctx, schema.NewID(), email, ip, now, now.Add(-15*time.Minute)).Scan(&n, &locked, &byEmail, &byIP)
		}
	}
	plain := func(ctx context.Context, args ...any) *sql.Row {
		return db.QueryRowContext(ctx, baselineFailure, args...)
	}
	runImpls(b, []benchImpl{{"service", service}, {"baseline", baseline(plain)}, {"baseline-prepared", baseline(prepared.QueryRowContext)}},
		// New keys, beyond the seeded ones: each failure inserts a row.
		func(int) (string, string) { return benchKey(benchKeys + int(benchSeq.Add(1))) },
		func() (string, string) { return benchKey(int(benchSeq.Add(1)) % benchKeys) })
}

// benchImpl is one implementation of the operation a benchmark measures.
type benchImpl struct {
	name string
	f    func(email, ip string) error
}

// runImpls runs each implementation on distinct keys, one after another,
// and on one hot key from parallel goroutines.
func runImpls(b *testing.B, impls []benchImpl, distinct func(i int) (email, ip string), hot func() (email, ip string)) {
	for _, impl := range impls {
		b.Run("distinct/"+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := impl.f(distinct(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("hot-parallel/"+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			email, ip := hot()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := impl.f(email, ip); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPoolerModes compares the service on one database in today's
// prepared mode, in pooler-safe mode (pgbouncer=true) on a direct
// connection, in pooler-safe mode through PgBouncer in transaction pooling,
// and in prepared mode through PgBouncer in session pooling, on the tests'
// driver (TEST_DB_DRIVER; make bench runs both).
func BenchmarkPoolerModes(b *testing.B) {
	benchSetup(b)
	url := benchURL
	modes := []struct{ name, url string }{
		{"prepared", url},
		{"pooler-safe", url + "&pgbouncer=true"},
		{"pooler-safe-via-pgbouncer", pgtest.StartBouncer(b, pgcluster.PoolTransaction, 8, nil).URL(b, url, "pgbouncer", "true")},
		{"prepared-via-pgbouncer-session", pgtest.StartBouncer(b, pgcluster.PoolSession, 8, nil).URL(b, url)},
	}
	ctx := context.Background()
	for _, m := range modes {
		pool, err := database.OpenConfig(m.url, database.Config{Driver: pgtest.Driver(), MaxOpenConns: 8, MaxIdleConns: 8})
		require.NoError(b, err)
		b.Cleanup(func() { _ = pool.Close() })
		s, err := lockout.New(pool, lockout.Config{Logger: slog.New(slog.DiscardHandler)})
		require.NoError(b, err)
		b.Run("check/"+m.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				email, ip := benchKey(i % benchKeys)
				if _, err := s.Check(ctx, email, ip); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("record-failure/"+m.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				email, ip := benchKey(benchKeys + int(benchSeq.Add(1)))
				if _, err := s.RecordFailure(ctx, email, ip); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
