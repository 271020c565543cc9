package idem

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/ent"
	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/faultproxy"
	"github.com/klozd/api/internal/pgtest"
)

// txFixture is a transactional route whose handler inserts an order row
// (through the *sql.Tx) and a lockout row (through the ent transaction),
// then answers as told.
type txFixture struct {
	s      *Store
	db     *sql.DB // direct, to look
	proxy  *faultproxy.Proxy
	h      http.Handler
	runs   atomic.Int64
	answer atomic.Value // func(w http.ResponseWriter, r *http.Request)
}

func newTxFixture(t *testing.T, cfg StoreConfig) *txFixture {
	t.Helper()
	dbURL := pgtest.URL(t)
	f := &txFixture{db: pgtest.Open(t, dbURL)}
	_, err := f.db.Exec(`CREATE TABLE orders (key text NOT NULL, n int NOT NULL,
		CONSTRAINT orders_n_ok CHECK (n >= 0) NOT VALID,
		CONSTRAINT orders_key_once UNIQUE (key) DEFERRABLE INITIALLY DEFERRED)`)
	require.NoError(t, err)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	f.proxy, err = faultproxy.Start(u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.proxy.Close() })
	u.Host = f.proxy.Addr()
	pool, err := database.OpenConfig(u.String(), database.Config{Driver: pgtest.Driver(), MaxOpenConns: 4})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	f.s = NewStore(pool, cfg)
	f.answer.Store(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	f.h = serve(Config{Store: f.s, Transactional: true}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.runs.Add(1)
		tx := TxFromContext(r.Context())
		if _, err := tx.ExecContext(r.Context(), `INSERT INTO orders VALUES ($1, $2)`, r.Header.Get("Idempotency-Key"), n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := ent.TxFromContext(r.Context()).AuthAttempt.Create().
			SetID(fmt.Sprintf("tx-%d", n)).SetEmail("ann@example.org").SetLastAttemptAt(time.Now()).
			Exec(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		token, ok := TokenFromContext(r.Context())
		if !ok || token == "" {
			http.Error(w, "no token", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		f.answer.Load().(func(http.ResponseWriter, *http.Request))(w, r)
		fmt.Fprintf(w, `{"order":%d}`, n)
	}))
	return f
}

// state returns the order rows, lockout rows and records for key.
func (f *txFixture) state(t *testing.T, key string) (orders, attempts int, record *int) {
	t.Helper()
	require.NoError(t, f.db.QueryRow(`SELECT count(*) FROM orders WHERE key = $1`, key).Scan(&orders))
	require.NoError(t, f.db.QueryRow(`SELECT count(*) FROM auth_attempts`).Scan(&attempts))
	var status int
	err := f.db.QueryRow(`SELECT "responseStatus" FROM idempotency_records WHERE "key" = $1`, storedKey("", key)).Scan(&status)
	if !errors.Is(err, sql.ErrNoRows) {
		require.NoError(t, err)
		record = &status
	}
	return orders, attempts, record
}

func TestTransactionalCommitsWorkAndRecordTogether(t *testing.T) {
	t.Parallel()
	f := newTxFixture(t, StoreConfig{})
	w := post(f.h, "k1", "{}")
	assert.Equal(t, http.StatusCreated, w.Code)
	assert.JSONEq(t, `{"order":1}`, w.Body.String())
	orders, attempts, record := f.state(t, "k1")
	assert.Equal(t, 1, orders)
	assert.Equal(t, 1, attempts, "the ent write committed with it")
	require.NotNil(t, record)
	assert.Equal(t, http.StatusCreated, *record)

	again := post(f.h, "k1", "{}")
	assert.Equal(t, http.StatusCreated, again.Code)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, w.Body.String(), again.Body.String())
	assert.EqualValues(t, 1, f.runs.Load(), "replayed, not run again")
}

// A handler's 5xx rolls its work back and stores nothing; its 4xx commits
// with its work, as any stored answer does; a panic rolls back.
func TestTransactionalRollsBackWhatIsNotStored(t *testing.T) {
	t.Parallel()
	f := newTxFixture(t, StoreConfig{})
	f.answer.Store(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	assert.Equal(t, http.StatusBadGateway, post(f.h, "k5", "{}").Code)
	orders, attempts, record := f.state(t, "k5")
	assert.Zero(t, orders)
	assert.Zero(t, attempts)
	assert.Nil(t, record, "the claim was released")

	f.answer.Store(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnprocessableEntity) })
	assert.Equal(t, http.StatusUnprocessableEntity, post(f.h, "k4", "{}").Code)
	orders, _, record = f.state(t, "k4")
	assert.Equal(t, 1, orders)
	require.NotNil(t, record)
	assert.Equal(t, http.StatusUnprocessableEntity, *record)

	f.answer.Store(func(http.ResponseWriter, *http.Request) { panic("handler failed") })
	assert.PanicsWithValue(t, "handler failed", func() { post(f.h, "kp", "{}") })
	orders, _, record = f.state(t, "kp")
	assert.Zero(t, orders)
	assert.Nil(t, record)
}

// A commit that fails (here a deferred constraint) sends a 503 and leaves
// neither the work nor the record: a retry runs again.
func TestTransactionalFailedCommitIsA503(t *testing.T) {
	t.Parallel()
	f := newTxFixture(t, StoreConfig{})
	_, err := f.db.Exec(`INSERT INTO orders VALUES ('dup', 0)`) // the deferred unique check fails at COMMIT
	require.NoError(t, err)
	w := post(f.h, "dup", "{}")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, w.Body.String())
	assert.Contains(t, w.Body.String(), ProblemNotCommitted)
	orders, attempts, record := f.state(t, "dup")
	assert.Equal(t, 1, orders, "only the row from before")
	assert.Zero(t, attempts)
	assert.Nil(t, record)
}

// The reply to COMMIT is lost: the client gets a 503, never a 2xx it cannot
// vouch for, and its retry is settled by the database: a replay, since the
// commit landed.
func TestTransactionalLostCommitReplyIsSettledByRetry(t *testing.T) {
	t.Parallel()
	f := newTxFixture(t, StoreConfig{})
	require.Equal(t, http.StatusCreated, post(f.h, "warm", "{}").Code) // statements prepared
	f.answer.Store(func(w http.ResponseWriter, _ *http.Request) {
		// After the handler: the reply to storing the response, then the
		// reply to COMMIT, which is lost.
		f.proxy.DropReply(2)
		w.WriteHeader(http.StatusCreated)
	})
	w := post(f.h, "k", "{}")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, w.Body.String())
	orders, _, record := f.state(t, "k")
	assert.Equal(t, 1, orders, "the commit landed")
	require.NotNil(t, record)
	again := post(f.h, "k", "{}")
	assert.Equal(t, http.StatusCreated, again.Code)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
}

// The backend of the handler's transaction is killed while it runs:
// nothing commits, the client gets a 503, and a retry runs afresh.
func TestTransactionalKilledConnectionCommitsNothing(t *testing.T) {
	t.Parallel()
	f := newTxFixture(t, StoreConfig{})
	f.answer.Store(func(w http.ResponseWriter, r *http.Request) {
		var pid int
		tx := TxFromContext(r.Context())
		if err := tx.QueryRowContext(r.Context(), `SELECT pg_backend_pid()`).Scan(&pid); err == nil {
			_, _ = f.db.Exec(`SELECT pg_terminate_backend($1, 5000)`, pid)
		}
		w.WriteHeader(http.StatusCreated)
	})
	assert.Equal(t, http.StatusServiceUnavailable, post(f.h, "k", "{}").Code)
	orders, attempts, _ := f.state(t, "k")
	assert.Zero(t, orders)
	assert.Zero(t, attempts)
	f.answer.Store(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	require.Eventually(t, func() bool { return post(f.h, "k", "{}").Code == http.StatusCreated }, 10*time.Second, 10*time.Millisecond,
		"the retry runs once the claim is released")
	orders, _, _ = f.state(t, "k")
	assert.Equal(t, 1, orders)
}

// While the transaction runs, a duplicate gets 409 at once, never a wait
// behind the claim's row lock; a claim taken over before the transaction
// locked it runs nothing.
func TestTransactionalFencing(t *testing.T) {
	t.Parallel()
	f := newTxFixture(t, StoreConfig{})
	inside, release := make(chan struct{}), make(chan struct{})
	f.answer.Store(func(w http.ResponseWriter, _ *http.Request) {
		close(inside)
		<-release
		w.WriteHeader(http.StatusCreated)
	})
	done := make(chan int, 1)
	go func() { done <- post(f.h, "k", "{}").Code }()
	<-inside
	start := time.Now()
	dup := post(f.h, "k", "{}")
	assert.Equal(t, http.StatusConflict, dup.Code)
	assert.Less(t, time.Since(start), 5*time.Second, "not behind the row lock")
	close(release)
	assert.Equal(t, http.StatusCreated, <-done)

	ctx := context.Background()
	res, err := f.s.Begin(ctx, storeReq("taken"))
	require.NoError(t, err)
	_, err = f.db.Exec(`UPDATE idempotency_records SET "id" = 'another-claim' WHERE "id" = $1`, res.Claim.token)
	require.NoError(t, err)
	ran := false
	_, err = f.s.RunTx(ctx, res.Claim, func(context.Context) (Response, error) { ran = true; return Response{Status: 201}, nil })
	assert.ErrorIs(t, err, ErrClaimLost)
	assert.False(t, ran, "a claim taken over runs nothing")
}

// Store.Do is the same without HTTP.
func TestStoreDo(t *testing.T) {
	t.Parallel()
	f := newTxFixture(t, StoreConfig{})
	ctx := context.Background()
	calls := 0
	job := func(ctx context.Context) (Response, error) {
		calls++
		if _, err := TxFromContext(ctx).ExecContext(ctx, `INSERT INTO orders VALUES ('job', 1)`); err != nil {
			return Response{}, err
		}
		return Response{Status: 200, Body: []byte(`{"done":true}`)}, nil
	}
	resp, replayed, err := f.s.Do(ctx, storeReq("job"), job)
	require.NoError(t, err)
	assert.False(t, replayed)
	assert.Equal(t, 200, resp.Status)
	resp, replayed, err = f.s.Do(ctx, storeReq("job"), job)
	require.NoError(t, err)
	assert.True(t, replayed)
	assert.Equal(t, `{"done":true}`, string(resp.Body))
	assert.Equal(t, 1, calls)

	failing := func(ctx context.Context) (Response, error) {
		if _, err := TxFromContext(ctx).ExecContext(ctx, `INSERT INTO orders VALUES ('failed', 1)`); err != nil {
			return Response{}, err
		}
		return Response{}, errors.New("boom")
	}
	_, _, err = f.s.Do(ctx, storeReq("fails"), failing)
	assert.ErrorIs(t, err, ErrNotStored)
	orders, _, _ := f.state(t, "failed")
	assert.Zero(t, orders, "the failed job's write was rolled back")
	_, replayed, err = f.s.Do(ctx, storeReq("fails"), func(context.Context) (Response, error) { return Response{Status: 200}, nil })
	require.NoError(t, err, "a fresh run, not a 409")
	assert.False(t, replayed)
}

func TestTransactionalRejectsFailOpen(t *testing.T) {
	assert.PanicsWithValue(t,
		"idem: Config.Transactional and Config.FailOpen together: a transactional handler needs the store's transaction, which a store that is down cannot give; drop FailOpen",
		func() {
			Middleware(Config{Store: NewStore(deadDB(t), StoreConfig{}), Transactional: true, FailOpen: true})
		})
}

// A held response over MaxResponseBody rolls the work back: the client
// gets a 500 problem, nothing is stored, and the key can run again.
func TestTransactionalOversizedResponseRollsBack(t *testing.T) {
	t.Parallel()
	f := newTxFixture(t, StoreConfig{})
	f.h = serve(Config{Store: f.s, Transactional: true, MaxResponseBody: 8}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = TxFromContext(r.Context()).ExecContext(r.Context(), `INSERT INTO orders VALUES ('big', 1)`)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"far":"more than eight bytes"}`))
	}))
	w := post(f.h, "big", "{}")
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	assert.Contains(t, w.Body.String(), ProblemResponseTooLarge)
	orders, _, record := f.state(t, "big")
	assert.Zero(t, orders)
	assert.Nil(t, record)
}

// A handler that overruns its lease has its context cancelled a margin
// before the lease ends, with ErrLeaseLost, and its work rolled back: no
// other claimer ever waits behind its row lock, and nothing commits.
func TestTransactionalOverrunIsRolledBack(t *testing.T) {
	t.Parallel()
	f := newTxFixture(t, StoreConfig{Lease: time.Second})
	var cause atomic.Value
	f.h = serve(Config{Store: f.s, Transactional: true}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = TxFromContext(r.Context()).ExecContext(r.Context(), `INSERT INTO orders VALUES ('slow', 1)`)
		<-r.Context().Done()
		cause.Store(context.Cause(r.Context()))
		w.WriteHeader(http.StatusCreated) // too late
	}))
	assert.Equal(t, http.StatusServiceUnavailable, post(f.h, "slow", "{}").Code)
	assert.ErrorIs(t, cause.Load().(error), ErrLeaseLost)
	orders, _, record := f.state(t, "slow")
	assert.Zero(t, orders)
	assert.Nil(t, record, "released: a retry runs afresh")
}
