package idem

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgcluster"
	"github.com/klozd/api/internal/pgtest"
)

// Behind PgBouncer every Store operation works from several instances at
// once, exactly as on a direct connection: in transaction pooling with
// pgbouncer=true (no named statement survives a transaction there), and in
// session pooling sized for every instance's connections.
func TestStoreBehindPgBouncer(t *testing.T) {
	t.Parallel()
	const pools, workers, conns = 3, 50, 20
	for _, tc := range []struct {
		mode     string
		poolSize int
		params   []string
	}{
		{pgcluster.PoolTransaction, 10, []string{"pgbouncer", "true"}},
		{pgcluster.PoolSession, pools * conns, nil},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			dbURL := pgtest.URL(t)
			b := pgtest.StartBouncer(t, tc.mode, tc.poolSize, nil)
			url := b.URL(t, dbURL, tc.params...)
			stores := make([]*Store, pools)
			for i := range stores {
				db, err := database.OpenConfig(url, database.Config{Driver: pgtest.Driver(), MaxOpenConns: conns})
				require.NoError(t, err)
				t.Cleanup(func() { _ = db.Close() })
				require.Equal(t, tc.params != nil, database.PoolerSafe(db))
				stores[i] = NewStore(db, StoreConfig{Timeout: time.Minute}) // counts, not latency, are checked
			}
			runStoreWorkload(t, stores, workers, pgtest.Open(t, dbURL))
		})
	}
}

// runStoreWorkload has workers goroutines per store race over a set of
// keys with every Store operation, then checks each key ran exactly once
// (twice for keys whose first claim is released) and nothing is left in
// flight.
func runStoreWorkload(t *testing.T, stores []*Store, workers int, direct *sql.DB) {
	t.Helper()
	ctx := context.Background()
	const keys = 30
	req := func(k int) Request {
		r := storeReq(fmt.Sprintf("key-%03d", k))
		r.IP = fmt.Sprintf("198.51.100.%d", k%250)
		return r
	}
	released := func(k int) bool { return k%5 == 0 } // the first claim of these gives up
	resp := func(k int) Response {
		return Response{Status: 201, Header: http.Header{"Content-Type": {"application/json"}}, Body: fmt.Appendf(nil, `{"key":%d}`, k)}
	}
	var claims [keys]atomic.Int32
	var failures, replays, inflight, mismatches atomic.Int64
	errs := make(chan error, len(stores)*workers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for si, s := range stores {
		for w := range workers {
			wg.Go(func() {
				<-start
				for i := range keys {
					k := (i + w*7 + si*13) % keys
					if err := storeStep(ctx, s, req(k), resp(k), released(k), &claims[k], &replays, &inflight, &mismatches); err != nil {
						failures.Add(1)
						errs <- fmt.Errorf("key %d: %w", k, err)
						return
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.Zero(t, failures.Load(), "every call succeeds")

	// Every key is completed, by the claims expected; a key still in
	// flight at the end is claimed and completed now.
	for k := range keys {
		for {
			err := storeStep(ctx, stores[0], req(k), resp(k), released(k), &claims[k], &replays, &inflight, &mismatches)
			require.NoError(t, err)
			res, err := stores[0].Begin(ctx, req(k))
			if errors.Is(err, ErrInFlight) {
				continue // another step's claim finishes first; none is running now
			}
			require.NoError(t, err)
			require.NotNil(t, res.Replay, "key %d completed", k)
			assert.Equal(t, resp(k), *res.Replay, "key %d replays its response", k)
			break
		}
		want := int32(1)
		if released(k) {
			want = 2
		}
		assert.Equal(t, want, claims[k].Load(), "key %d ran exactly as often as claimed", k)
	}
	assert.Positive(t, replays.Load())
	assert.Positive(t, mismatches.Load())

	// No row holds another column's value, and nothing is in flight.
	var n, bad, open int
	require.NoError(t, direct.QueryRowContext(ctx, `SELECT count(*),
		count(*) FILTER (WHERE "route" <> 'POST /orders' OR "organizationId" <> 'org_1' OR "ip" NOT LIKE '198.51.100.%'
			OR length("key") <> 64 OR "responseBodyJson" NOT LIKE '{"v":1,%'),
		count(*) FILTER (WHERE "responseStatus" = 0)
		FROM idempotency_records`).Scan(&n, &bad, &open))
	assert.Equal(t, keys, n)
	assert.Zero(t, bad, "rows with values of other columns")
	assert.Zero(t, open, "claims left in flight")

	purged, err := stores[1].Purge(ctx)
	require.NoError(t, err)
	assert.Zero(t, purged, "nothing has expired")
	_, err = stores[2].CountExpired(ctx)
	require.NoError(t, err)
}

// storeStep runs one request of key k: a claim runs, renews, then
// completes or, for the first claim of a released key, releases; a live
// record replays; a request with another payload is refused.
func storeStep(ctx context.Context, s *Store, req Request, want Response, release bool, claims *atomic.Int32, replays, inflight, mismatches *atomic.Int64) error {
	other := req
	other.Fingerprint = Fingerprint("POST", req.Route, "", req.Tenant, "application/json", []byte(`{"other":true}`))
	res, err := s.Begin(ctx, req)
	switch {
	case errors.Is(err, ErrInFlight):
		inflight.Add(1)
		return nil
	case err != nil:
		return err
	case res.Replay != nil:
		replays.Add(1)
		if res.Replay.Status != want.Status || string(res.Replay.Body) != string(want.Body) {
			return fmt.Errorf("replayed %d %s", res.Replay.Status, res.Replay.Body)
		}
		// A completed record refuses another payload (an in-flight claim
		// could be released meanwhile, and the other payload would claim).
		if _, err := s.Begin(ctx, other); !errors.Is(err, ErrMismatch) {
			return fmt.Errorf("another payload on a completed key: %v", err)
		}
		mismatches.Add(1)
		return nil
	}
	n := claims.Add(1)
	if err := s.Renew(ctx, res.Claim); err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	if release && n == 1 {
		return s.Release(ctx, res.Claim)
	}
	return s.Complete(ctx, res.Claim, want)
}
