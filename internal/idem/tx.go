package idem

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/klozd/api/ent"
	"github.com/klozd/api/internal/database"
)

// ErrNotStored is wrapped by the error of [Store.RunTx] when the work was
// rolled back and nothing stored: the function failed, answered with a
// status that is not stored (1xx, 5xx), or rolled the transaction back
// itself. The claim is still held; release it.
var ErrNotStored = errors.New("idem: the work was rolled back and its response not stored")

type (
	txKey    struct{}
	tokenKey struct{}
)

// TxFromContext returns the transaction of a request on a transactional
// route ([Config.Transactional]) or of a [Store.Do] function, nil
// elsewhere. The handler's writes through it commit together with the
// stored response, or not at all. Never call its Commit or Rollback: the
// middleware ends it (answer a 5xx, or return an error from a Store.Do
// function, to roll back). The same transaction is in the context as an
// ent transaction: ent.TxFromContext(ctx).
func TxFromContext(ctx context.Context) *sql.Tx {
	tx, _ := ctx.Value(txKey{}).(*sql.Tx)
	return tx
}

// TokenFromContext returns the fencing token of the claim a handler runs
// under: the claim row's "id", new for each claim. A handler outside the
// transactional mode can fence its own writes with it (write only where
// the row with this id is still the key's claim).
func TokenFromContext(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(tokenKey{}).(string)
	return t, ok
}

// lockClaimSQL locks c's row for the transaction: from then on no other
// claim can take the key over until the transaction ends, and the
// transaction fails if the claim is already gone.
const lockClaimSQL = `SELECT 1 FROM idempotency_records WHERE "id" = $1 AND "responseStatus" = 0 FOR UPDATE`

// RunTx runs fn in a READ COMMITTED transaction that first locks c's row,
// then stores fn's response under c in the same transaction and commits:
// fn's writes through the transaction and the stored response commit
// together, or neither does. ctx bounds the whole transaction; fn gets it
// with the transaction inside ([TxFromContext], ent.TxFromContext) and
// c's token ([TokenFromContext]).
//
// It returns nil once both committed. It returns [ErrClaimLost] when c is
// no longer the key's claim (nothing of fn's committed), an error wrapping
// [ErrNotStored] when fn failed, answered a status that is not stored
// (1xx, 5xx) or rolled back (nothing committed), and an error wrapping
// database.ErrOutcomeUnknown when the connection broke during COMMIT: the
// database holds the answer, which a retry of the key finds (a replay if
// it committed, a fresh claim once c is released if not). Any other error
// means nothing committed. The row lock holds c: no lease renewal is
// needed while fn runs, but ctx should end before c's lease does (the
// middleware's does), or a claimer that comes once the lease has ended
// waits for the lock until its lock timeout.
func (s *Store) RunTx(ctx context.Context, c *Claim, fn func(ctx context.Context) (Response, error)) (Response, error) {
	lock, err := s.prepared(ctx, lockClaimSQL)
	if err != nil {
		return Response{}, fmt.Errorf("idem: run key %.12s on %q: %w", c.key, c.route, err)
	}
	complete, err := s.prepared(ctx, completeSQL)
	if err != nil {
		return Response{}, fmt.Errorf("idem: run key %.12s on %q: %w", c.key, c.route, err)
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return Response{}, fmt.Errorf("idem: run key %.12s on %q: begin: %w", c.key, c.route, err)
	}
	defer func() { _ = tx.Rollback() }() // after a commit, or a panic in fn: a no-op, or the rollback
	var one int
	switch err := lock.In(ctx, tx).QueryRow(ctx, c.token).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return Response{}, fmt.Errorf("idem: run key %.12s on %q: %w", c.key, c.route, ErrClaimLost)
	case err != nil:
		return Response{}, fmt.Errorf("idem: run key %.12s on %q: lock the claim: %w", c.key, c.route, err)
	}
	etx, err := database.EntTx(ctx, tx)
	if err != nil {
		return Response{}, fmt.Errorf("idem: run key %.12s on %q: %w", c.key, c.route, err)
	}
	fctx := ent.NewTxContext(context.WithValue(context.WithValue(ctx, txKey{}, tx), tokenKey{}, c.token), etx)
	resp, err := fn(fctx)
	switch {
	case err != nil:
		return resp, fmt.Errorf("idem: run key %.12s on %q: %w: %w", c.key, c.route, ErrNotStored, err)
	case resp.Status < 200 || resp.Status >= 500:
		return resp, fmt.Errorf("idem: run key %.12s on %q: status %d: %w", c.key, c.route, resp.Status, ErrNotStored)
	}
	body, err := encodeResponse(resp)
	if err != nil {
		return resp, fmt.Errorf("idem: run key %.12s on %q: %w", c.key, c.route, err)
	}
	res, err := complete.In(ctx, tx).Exec(ctx, c.token, resp.Status, body, s.now(), s.cfg.TTL.Milliseconds())
	if errors.Is(err, sql.ErrTxDone) {
		return resp, fmt.Errorf("idem: run key %.12s on %q: the transaction was rolled back: %w", c.key, c.route, ErrNotStored)
	}
	if err != nil {
		return resp, fmt.Errorf("idem: run key %.12s on %q: store the response: %w", c.key, c.route, err)
	}
	if err := affectedOne(res, "run", c); err != nil {
		return resp, err // the row is locked by this transaction: cannot happen
	}
	if err := tx.Commit(); err != nil {
		return resp, fmt.Errorf("idem: run key %.12s on %q: commit: %w", c.key, c.route, err)
	}
	return resp, nil
}

// Do runs fn once for req's key, as the transactional middleware does for
// a request, for callers without HTTP (a job consumer, a gRPC handler): it
// claims the key, runs fn in a transaction ([Store.RunTx]) and stores
// fn's result with it. It returns the response and false when fn ran and
// committed; the stored response and true when the key was done before;
// ErrInFlight or ErrMismatch as [Store.Begin] does; and any other error
// when nothing committed (the claim is then released, so a retry runs fn
// again) or when the commit's outcome is unknown (a retry settles it).
func (s *Store) Do(ctx context.Context, req Request, fn func(ctx context.Context) (Response, error)) (Response, bool, error) {
	res, err := s.Begin(ctx, req)
	if err != nil {
		return Response{}, false, err
	}
	if res.Replay != nil {
		return *res.Replay, true, nil
	}
	c := res.Claim
	run, cancel := context.WithDeadline(ctx, c.leaseDeadline().Add(-leaseMargin(s.cfg.Lease)))
	defer cancel()
	resp, err := s.RunTx(run, c, fn)
	if err != nil {
		s.settle(context.WithoutCancel(ctx), c, err)
		return resp, false, err
	}
	return resp, false, nil
}

// settle frees c after a [Store.RunTx] that did not commit, or whose
// commit's outcome is unknown: the release is fenced to a claim still in
// flight, so it does nothing when the commit did land.
func (s *Store) settle(ctx context.Context, c *Claim, err error) {
	if errors.Is(err, ErrClaimLost) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	_, _ = retry(ctx, c.leaseDeadline(), func(ctx context.Context) error { return s.Release(ctx, c) }, func(error) {})
}

// runTx serves a request on a transactional route: the handler runs inside
// [Store.RunTx] with its response held, and the client hears only what
// committed.
func (m *middleware) runTx(next http.Handler, w http.ResponseWriter, r *http.Request, c *Claim, ev Event, log logger) {
	s := m.cfg.Store
	hold := &holdRecorder{header: http.Header{}, limit: m.cfg.MaxResponseBody}
	// The transaction ends a margin before the lease does, so that no
	// claimer waits behind its row lock: the lease is not renewed, the
	// connection being the handler's.
	ctx, cancel := context.WithDeadlineCause(r.Context(), c.leaseDeadline().Add(-leaseMargin(s.cfg.Lease)),
		fmt.Errorf("%w: the transactional handler ran past its lease", ErrLeaseLost))
	defer cancel()
	finished := false
	defer func() {
		if !finished {
			// The handler panicked: RunTx rolled back; release and let the
			// panic go on up.
			s.settle(context.WithoutCancel(r.Context()), c, ErrNotStored)
			m.emit(ev, EventReleased, hold.status, "panic")
		}
	}()
	resp, err := s.RunTx(ctx, c, func(ctx context.Context) (Response, error) {
		next.ServeHTTP(hold, r.WithContext(ctx))
		return hold.response(m.cfg), nil
	})
	finished = true
	switch {
	case err == nil:
		m.emit(ev, EventStored, resp.Status, "")
		log.log(r.Context(), slog.LevelDebug, "idem: committed and stored", slog.Int("status", resp.Status))
		hold.sendTo(w)
	case errors.Is(err, ErrNotStored) && hold.overflow:
		s.settle(context.WithoutCancel(r.Context()), c, err)
		m.emit(ev, EventReleased, hold.status, "too large")
		writeProblem(w, ProblemResponseTooLarge, http.StatusInternalServerError, "The response exceeded the size this route can hold until its transaction commits; nothing was done.", 0)
	case errors.Is(err, ErrNotStored) && hold.status != 0 && (hold.status < 200 || hold.status >= 400):
		// Rolled back: the handler's own failure answer goes out as it is.
		s.settle(context.WithoutCancel(r.Context()), c, err)
		m.emit(ev, EventReleased, hold.status, "status")
		hold.sendTo(w)
	default:
		// Nothing committed, or the commit's outcome is unknown: never a
		// 2xx for work that may have been rolled back. A retry finds out.
		s.settle(context.WithoutCancel(r.Context()), c, err)
		m.emit(ev, EventReleased, hold.status, "not committed")
		log.log(r.Context(), slog.LevelWarn, "idem: transactional handler's work not committed; answering 503", slog.Any("error", err))
		writeProblem(w, ProblemNotCommitted, http.StatusServiceUnavailable, "The request could not be completed; retry it with the same "+m.cfg.Header+".", m.cfg.RetryAfter)
	}
}

// holdRecorder keeps a transactional handler's response until its
// transaction commits.
type holdRecorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	limit    int
	overflow bool
}

func (h *holdRecorder) Header() http.Header { return h.header }

func (h *holdRecorder) WriteHeader(code int) {
	if h.status == 0 && (code < 100 || code >= 200) {
		h.status = code
	}
}

func (h *holdRecorder) Write(p []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	if h.body.Len()+len(p) > h.limit {
		h.overflow = true
		return 0, errors.New("idem: the response of a transactional handler exceeds Config.MaxResponseBody")
	}
	return h.body.Write(p)
}

// response is the held response as it is stored: the status (200 if the
// handler wrote none), the replayed headers, the body sent. A response
// over the limit is answered 500 and not stored.
func (h *holdRecorder) response(cfg Config) Response {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	if h.overflow {
		h.status = http.StatusInternalServerError
	}
	if _, ok := h.header["Content-Type"]; !ok && h.body.Len() > 0 {
		h.header.Set("Content-Type", cfg.DefaultContentType)
	}
	saved := http.Header{}
	for _, k := range cfg.ReplayHeaders {
		if v, ok := h.header[k]; ok && len(v) > 0 {
			saved[k] = append([]string(nil), v...)
		}
	}
	var body []byte
	if bodyAllowed(h.status) {
		body = bytes.Clone(h.body.Bytes())
	}
	return Response{Status: h.status, Header: saved, Body: body}
}

// sendTo writes the held response to w.
func (h *holdRecorder) sendTo(w http.ResponseWriter) {
	for k, vs := range h.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(h.status)
	if bodyAllowed(h.status) {
		_, _ = w.Write(h.body.Bytes())
	}
}
