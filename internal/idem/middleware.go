package idem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/klozd/api/internal/problem"
)

// EventKind names an [Event].
type EventKind string

// The events passed to [Config.OnEvent].
const (
	// EventReplay: a stored response was sent again.
	EventReplay EventKind = "replay"
	// EventConflict: a duplicate arrived while the first was in flight
	// (answered 409, or waiting when [Config.Wait] is set).
	EventConflict EventKind = "conflict"
	// EventMismatch: the key was reused with another request (422).
	EventMismatch EventKind = "mismatch"
	// EventStored: a response was stored for replay.
	EventStored EventKind = "stored"
	// EventReleased: a claim was released, the response not stored; Reason
	// says why.
	EventReleased EventKind = "released"
	// EventLateWrite: a handler wrote its response after it had been told
	// to stop because its lease was lost ([ErrLeaseLost]); what it wrote
	// is stored only if its claim proves still current (no other request
	// took the key). Status is what it wrote.
	EventLateWrite EventKind = "late write"
)

// Event describes something the middleware did with a key. It never holds
// the raw key or a body.
type Event struct {
	Kind EventKind
	// KeyID is the stored form of the key: a hash, safe to log.
	KeyID  string
	Route  string
	Tenant string
	// Status is the response status, for replay, stored and released.
	Status int
	// Reason is why a claim was released: "status" (1xx or 5xx), "panic",
	// "canceled", "too large", "hijacked" (the handler took over the
	// connection) or "lease lost" (see [ErrLeaseLost]); "waiting" for a
	// conflict that waits; or "not kept" for a response stored as done
	// without its body, which was over [Config.MaxResponseBody].
	Reason string
}

// releaseTimeout bounds a cleanup statement that is not retried (see
// [Config.StoreRetry]). Cleanup runs detached from the request's context so
// a cancelled request still stores its response or releases its claim.
const releaseTimeout = 5 * time.Second

// beginTimeout bounds each claim statement. It runs detached from the
// request's context: a claim that committed just as the client went away
// is then seen, and released, instead of blocking its key for a lease.
const beginTimeout = 5 * time.Second

// Middleware returns net/http middleware that makes the requests it applies
// to ([Config.Methods] with a key in [Config.Header]) run at most once per
// (tenant, key, route) within the store's TTL, across every instance that
// shares the database:
//
//   - a malformed key, or a missing one where [Config.Required] says so: 400;
//   - a body over [Config.MaxRequestBody]: 413, before the handler;
//   - the first request claims the key and runs the handler, which reads
//     the full body; a final response below 500 is stored;
//   - a duplicate gets the stored response again, same status, headers
//     and bytes, with Idempotent-Replayed: true;
//   - a duplicate of a request in flight: 409 with Retry-After, or it waits
//     up to [Config.Wait] for the response;
//   - the key reused with another payload: 422;
//   - the store unreachable: 503, the handler not run, unless
//     [Config.FailOpen].
//
// Errors are RFC 9457 application/problem+json bodies. Middleware panics,
// with an "idem:" prefix, when cfg is invalid.
func Middleware(cfg Config) func(http.Handler) http.Handler {
	m := &middleware{cfg: cfg.resolve()}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(next, w, r) })
	}
}

type middleware struct{ cfg Config }

func (m *middleware) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	cfg := &m.cfg
	if !slices.Contains(cfg.Methods, r.Method) {
		next.ServeHTTP(w, r)
		return
	}
	values := r.Header.Values(cfg.Header)
	if len(values) == 0 {
		if cfg.Required != nil && cfg.Required(r) {
			writeProblem(w, ProblemKeyMissing, http.StatusBadRequest, "This request requires an "+cfg.Header+" header.", 0)
			return
		}
		next.ServeHTTP(w, r)
		return
	}
	if len(values) > 1 {
		writeProblem(w, ProblemKeyInvalid, http.StatusBadRequest, "Send one "+cfg.Header+" header, not several.", 0)
		return
	}
	key, err := ParseKey(values[0])
	if err != nil {
		writeProblem(w, ProblemKeyInvalid, http.StatusBadRequest, "The "+cfg.Header+" header must be one key of 1 to 255 printable ASCII characters: a token, or a quoted string; not a list.", 0)
		return
	}
	body, err := readBody(w, r, cfg.MaxRequestBody)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeProblem(w, ProblemRequestTooLarge, http.StatusRequestEntityTooLarge, "The request body exceeds "+strconv.FormatInt(cfg.MaxRequestBody, 10)+" bytes.", 0)
			return
		}
		writeProblem(w, ProblemRequestInvalid, http.StatusBadRequest, "The request body could not be read.", 0)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))

	route := r.Pattern
	if route == "" {
		route = cfg.Route(r)
	}
	if !storable(route) {
		writeProblem(w, ProblemRequestInvalid, http.StatusBadRequest, "This request's path cannot carry an "+cfg.Header+": it is not printable UTF-8 of at most "+strconv.Itoa(MaxRouteLen)+" bytes.", 0)
		return
	}
	req := Request{Key: key, Route: route, Tenant: cfg.Tenant(r)}
	if !storable(req.Tenant) {
		writeProblem(w, ProblemRequestInvalid, http.StatusBadRequest, "This request's tenant cannot carry an "+cfg.Header+": it is not printable UTF-8 of at most "+strconv.Itoa(MaxRouteLen)+" bytes.", 0)
		return
	}
	req.Fingerprint, err = fingerprint(r.Method, route, r.URL.RequestURI(), req.Tenant, r.Header.Get("Content-Type"), body)
	if err != nil {
		writeProblem(w, ProblemRequestInvalid, http.StatusBadRequest, "The request body is not one valid JSON value with unique member names, as its Content-Type says it is.", 0)
		return
	}
	if cfg.IP != nil {
		if ip := cfg.IP(r); storable(ip) {
			req.IP = ip
		}
	}
	ev := Event{KeyID: storedKey(req.Tenant, req.Key), Route: route, Tenant: req.Tenant}
	log := logger{l: cfg.Logger, keyID: ev.KeyID[:16], route: route}

	res, err := m.begin(r.Context(), req, ev)
	if errors.Is(err, ErrMismatch) {
		// The record may predate fingerprint version 3: its retries match
		// it by the version it was made with.
		prev := req
		prev.Fingerprint = fingerprintV2(r.Method, route, r.URL.RequestURI(), req.Tenant, r.Header.Get("Content-Type"), body)
		res, err = m.begin(r.Context(), prev, ev)
	}
	switch {
	case errors.Is(err, ErrMismatch):
		m.emit(ev, EventMismatch, 0, "")
		log.log(r.Context(), slog.LevelInfo, "idem: key reused with a different request")
		writeProblem(w, ProblemKeyMismatch, http.StatusUnprocessableEntity, "This "+cfg.Header+" was used with a different request; send a new key.", 0)
		return
	case errors.Is(err, ErrInFlight):
		writeProblem(w, ProblemInFlight, http.StatusConflict, "A request with this "+cfg.Header+" is being processed; retry later.", m.inFlightRetryAfter(r.Context(), err))
		return
	case err != nil && r.Context().Err() != nil:
		return // the client is gone; nobody reads an answer
	case err != nil && cfg.FailOpen && unavailable(err):
		log.log(r.Context(), slog.LevelError, "idem: store unavailable, running without idempotency (fail open)", slog.Any("error", err))
		next.ServeHTTP(w, r)
		return
	case err != nil:
		log.log(r.Context(), slog.LevelError, "idem: store failed, answering 503", slog.Any("error", err))
		writeProblem(w, ProblemStoreUnavailable, http.StatusServiceUnavailable, "Idempotency keys cannot be checked right now; retry later.", cfg.RetryAfter)
		return
	case res.Replay != nil:
		m.emit(ev, EventReplay, res.Replay.Status, "")
		log.log(r.Context(), slog.LevelDebug, "idem: replayed", slog.Int("status", res.Replay.Status))
		replay(w, res.Replay)
		return
	case r.Context().Err() != nil:
		// The client went away while the key was being claimed.
		m.release(context.WithoutCancel(r.Context()), res.Claim, ev, log, 0, "canceled", false)
		return
	}
	if cfg.Transactional {
		m.runTx(next, w, r, res.Claim, ev, log)
		return
	}
	m.run(next, w, r, res.Claim, ev, log)
}

// begin calls Begin, and while the key is in flight and cfg.Wait allows,
// polls until it can replay or claim, or ctx ends. Each Begin runs detached
// from ctx, bounded by beginTimeout.
func (m *middleware) begin(ctx context.Context, req Request, ev Event) (Result, error) {
	detached := context.WithoutCancel(ctx)
	var waitUntil time.Time // set once waiting starts
	once := func() (Result, error) {
		timeout := beginTimeout
		if !waitUntil.IsZero() {
			// A poll does not run past the wait by more than a moment.
			timeout = min(timeout, max(time.Until(waitUntil), 100*time.Millisecond))
		}
		ctx, cancel := context.WithTimeout(detached, timeout)
		defer cancel()
		return m.cfg.Store.Begin(ctx, req)
	}
	res, err := once()
	if !errors.Is(err, ErrInFlight) {
		return res, err
	}
	if m.cfg.Wait <= 0 {
		m.emit(ev, EventConflict, 0, "")
		return res, err
	}
	m.emit(ev, EventConflict, 0, "waiting")
	waitUntil = time.Now().Add(m.cfg.Wait)
	deadline := time.NewTimer(m.cfg.Wait)
	defer deadline.Stop()
	tick := time.NewTicker(m.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-deadline.C:
			return Result{}, err // the last poll's ErrInFlight
		case <-tick.C:
		}
		res, err = once()
		if !errors.Is(err, ErrInFlight) {
			return res, err
		}
	}
}

// inFlightRetryAfter is the Retry-After of the 409 for err, an
// [ErrInFlight]: what is left of the claim's lease, which is when the key
// is answered at the latest (replayed, or claimable if its instance died),
// at least [Config.RetryAfter] and at most one lease. It is
// Config.RetryAfter when the lease's end is unknown.
func (m *middleware) inFlightRetryAfter(ctx context.Context, err error) time.Duration {
	floor := m.cfg.RetryAfter
	var inFlight *InFlightError
	if !errors.As(err, &inFlight) {
		return floor
	}
	left, err := m.cfg.Store.until(context.WithoutCancel(ctx), inFlight.ExpiresAt)
	if err != nil {
		return floor
	}
	return min(max(left, floor), max(m.cfg.Store.cfg.Lease, floor))
}

// run runs the handler under claim c, renewing its lease meanwhile, and
// then stores its response or releases the claim. No connection is held
// while the handler runs.
func (m *middleware) run(next http.Handler, w http.ResponseWriter, r *http.Request, c *Claim, ev Event, log logger) {
	rec := &recorder{w: w, limit: m.cfg.MaxResponseBody, defaultType: m.cfg.DefaultContentType, keep: m.cfg.ReplayHeaders}
	cleanup := context.WithoutCancel(r.Context())
	ctx, cancel := context.WithCancelCause(context.WithValue(r.Context(), tokenKey{}, c.token))
	defer cancel(nil)
	stopRenewing := m.keepAlive(c, log, func(cause error) {
		rec.stopped.Store(true)
		cancel(cause)
	})
	finished := false
	defer func() {
		if !finished {
			// The handler panicked (or called runtime.Goexit): release and
			// let the panic go on up, unrecovered.
			m.release(cleanup, c, ev, log, rec.status, "panic", stopRenewing())
		}
	}()
	next.ServeHTTP(rec, r.WithContext(ctx))
	lost := stopRenewing()
	if rec.hijacked {
		finished = true
		// The handler answered on the raw connection: there is no response
		// to store, and none to finish.
		m.release(cleanup, c, ev, log, 0, "hijacked", lost)
		return
	}
	answered := rec.status != 0 // before finish turns silence into a 200
	if lost && !answered {
		// The handler stopped, as told, without an answer: nothing was
		// done that the client could be told of, so it hears to retry,
		// not a 200 with nothing behind it.
		writeProblem(rec, ProblemRequestStopped, http.StatusServiceUnavailable, "The request was stopped before it finished; retry it with the same "+m.cfg.Header+".", m.cfg.RetryAfter)
	} else if rec.late.Load() {
		log.log(cleanup, slog.LevelWarn, "idem: the handler wrote after it was told to stop (lease lost); its response is stored only if its claim is still current",
			slog.Int("status", rec.status))
		m.emit(ev, EventLateWrite, rec.status, "lease lost")
	}
	rec.finish() // may panic (an invalid status): still unfinished
	finished = true

	// A 2xx the handler wrote means the work was done: it is stored even
	// when the request was cancelled or the lease lost (the store is fenced
	// by the claim, so it lands only if no other request took the key
	// since). A handler that wrote nothing gave up.
	done := answered && rec.status >= 200 && rec.status < 300
	switch {
	case lost && !done:
		log.log(cleanup, slog.LevelWarn, "idem: lease lost while the handler ran; its response is not stored",
			slog.Int("status", rec.status), slog.Any("error", context.Cause(ctx)))
		m.release(cleanup, c, ev, log, rec.status, "lease lost", lost)
	case r.Context().Err() != nil && !done:
		// The handler may have answered the cancellation itself; a final
		// 2xx, though, means the work was done, and is stored below.
		m.release(cleanup, c, ev, log, rec.status, "canceled", lost)
	case rec.status < 200 || rec.status >= 500:
		m.release(cleanup, c, ev, log, rec.status, "status", lost)
	case rec.overflow && rec.status >= 400:
		// A refusal: nothing was done, so the key may run again and its
		// retry gets a real answer.
		log.log(r.Context(), slog.LevelWarn, "idem: response body over the limit, not stored; the key can run again",
			slog.Int("status", rec.status), slog.Int("limit", m.cfg.MaxResponseBody))
		m.release(cleanup, c, ev, log, rec.status, "too large", lost)
	default:
		resp := Response{Status: rec.status, Header: rec.saved, Body: rec.buf}
		if rec.overflow {
			// The work was done (2xx, 3xx): the key stays done, and a retry
			// hears that the response was not kept instead of running it
			// again.
			log.log(r.Context(), slog.LevelWarn, "idem: response body over the limit; stored as done without its response",
				slog.Int("status", rec.status), slog.Int("limit", m.cfg.MaxResponseBody))
			resp = Response{Status: rec.status, NotKept: true}
		}
		_, err := m.persist(cleanup, c, log, func(ctx context.Context) error { return m.cfg.Store.Complete(ctx, c, resp) })
		if lost && errors.Is(err, ErrClaimLost) {
			// Another request holds the key now; it no longer waits on
			// this claim.
			log.log(cleanup, slog.LevelWarn, "idem: lease lost while the handler ran and the key was claimed again; its response is not stored",
				slog.Int("status", rec.status))
			m.emit(ev, EventReleased, rec.status, "lease lost")
			return
		}
		if err != nil {
			log.log(r.Context(), slog.LevelError, "idem: response sent but not stored; the key stays claimed until its lease ends",
				slog.Int("status", rec.status), slog.Any("error", err))
			return
		}
		m.emit(ev, EventStored, rec.status, map[bool]string{true: "not kept"}[resp.NotKept])
		log.log(r.Context(), slog.LevelDebug, "idem: stored", slog.Int("status", rec.status))
	}
}

// keepAlive renews c's lease every third of the lease while the handler
// runs, each time with one short statement, so that a handler running
// longer than the lease keeps its key. A renewal that fails transiently is
// retried until the stop point, a fifth of the lease ([leaseMargin])
// before the lease ends by the local clock. A guard on that clock, which
// waits for no statement and no driver, cancels the handler's context
// with [ErrLeaseLost] at the stop point unless a renewal moved the lease
// on; so does a renewal that finds the claim gone. Another request can
// claim the key only once the lease has ended by the database's clock, no
// sooner than the local deadline (see [Store.lease]), so the handler is
// told to stop a margin before anyone else may start. The returned
// function stops the renewals and the guard and reports whether the lease
// was lost.
func (m *middleware) keepAlive(c *Claim, log logger, lose context.CancelCauseFunc) (stop func() (lost bool)) {
	s := m.cfg.Store
	margin := leaseMargin(s.cfg.Lease)
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu       sync.Mutex
		finished bool // stop was called
		lostNow  bool
	)
	// loseOnce cancels the handler, once, unless it has already returned.
	loseOnce := func(cause error, msg string) {
		mu.Lock()
		defer mu.Unlock()
		if finished || lostNow {
			return
		}
		lostNow = true
		log.log(ctx, slog.LevelError, msg, slog.Any("error", cause))
		lose(fmt.Errorf("%w: %w", ErrLeaseLost, cause))
		cancel()
	}
	untilStop := func() time.Duration { return s.leaseLeft(c) - margin }
	var guard *time.Timer
	guard = time.AfterFunc(time.Hour, func() { // armed below, once guard is set
		if d := untilStop(); d > 0 {
			guard.Reset(d) // a renewal moved the lease on
			return
		}
		loseOnce(fmt.Errorf("not renewed %s before the lease ends", margin),
			"idem: lease not renewed in time; cancelling the handler's context before the lease ends")
	})
	guard.Reset(max(0, untilStop()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Renew when a third of the lease has passed, counted from the
		// claim (or the last renewal), not from now: the claim statement
		// may have waited for a lock or a connection.
		next := func() time.Duration { return max(0, s.leaseLeft(c)-2*s.cfg.Lease/3) }
		t := time.NewTimer(next())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			left := untilStop()
			rctx, rcancel := context.WithTimeout(ctx, max(left, 0))
			_, err := retry(rctx, time.Now().Add(left), func(ctx context.Context) error { return s.Renew(ctx, c) }, func(err error) {
				log.log(ctx, slog.LevelWarn, "idem: lease renewal failed transiently; retrying", slog.Any("error", err))
			})
			rcancel()
			if ctx.Err() != nil {
				return // the handler returned, or the guard stopped it
			}
			if err != nil {
				loseOnce(err, "idem: lease lost while the handler runs; cancelling its context")
				return
			}
			log.log(ctx, slog.LevelDebug, "idem: lease renewed", slog.Time("expires_at", c.LeaseExpiresAt()))
			t.Reset(next())
		}
	}()
	return func() bool {
		mu.Lock()
		finished = true
		lost := lostNow
		mu.Unlock()
		guard.Stop()
		cancel()
		<-done
		return lost
	}
}

// leaseMargin is how long before its lease ends, by the local clock, a
// handler whose lease was not renewed is told to stop ([ErrLeaseLost]): a
// fifth of the lease. It covers the handler's time to notice, the
// scheduling of the guard's timer and the drift of the local clock against
// the database's over one lease.
func leaseMargin(lease time.Duration) time.Duration { return lease / 5 }

// release releases c and reports it. lost says the lease was lost while
// the handler ran, so another claim may have replaced c.
func (m *middleware) release(ctx context.Context, c *Claim, ev Event, log logger, status int, reason string, lost bool) {
	sawTransient, err := m.persist(ctx, c, log, func(ctx context.Context) error { return m.cfg.Store.Release(ctx, c) })
	if errors.Is(err, ErrClaimLost) && (sawTransient || lost) {
		// An earlier attempt may have deleted the row and lost only its
		// reply, or another claim replaced it; either way the claim no
		// longer blocks the key.
		err = nil
	}
	if err != nil {
		log.log(ctx, slog.LevelError, "idem: claim not released; the key stays claimed until its lease ends",
			slog.String("reason", reason), slog.Any("error", err))
		return
	}
	m.emit(ev, EventReleased, status, reason)
	log.log(ctx, slog.LevelDebug, "idem: released", slog.String("reason", reason), slog.Int("status", status))
}

// persist runs op, a fenced and idempotent statement on claim c, detached
// from the request's cancellation (ctx is already detached). It retries
// transient failures, logging each at warn level, until [Config.StoreRetry]
// has passed or c's lease ends, whichever is first. The attempts run until
// that deadline, but never for less than releaseTimeout: the fence makes a
// late attempt safe, and a late store still spares the handler a second
// run if nobody re-claimed the key, so a handler that finished just before
// its lease ended (or after it, or with retries disabled) still gets one
// full attempt. It returns whether an attempt failed transiently, and op's
// last error.
func (m *middleware) persist(ctx context.Context, c *Claim, log logger, op func(context.Context) error) (bool, error) {
	now := time.Now()
	until := now.Add(max(0, min(m.cfg.StoreRetry, m.cfg.Store.leaseLeft(c))))
	ctx, cancel := context.WithDeadline(ctx, now.Add(max(until.Sub(now), releaseTimeout)))
	defer cancel()
	return retry(ctx, until, op, func(err error) {
		log.log(ctx, slog.LevelWarn, "idem: store failed transiently after the handler ran; retrying", slog.Any("error", err))
	})
}

// logger logs an event of one key, identified by a prefix of its hash.
// Attributes are built only for enabled levels.
type logger struct {
	l            *slog.Logger
	keyID, route string
}

func (l logger) log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.l.Enabled(ctx, level) {
		return
	}
	l.l.LogAttrs(ctx, level, msg, append([]slog.Attr{slog.String("key_id", l.keyID), slog.String("route", l.route)}, attrs...)...)
}

func (m *middleware) emit(ev Event, kind EventKind, status int, reason string) {
	if m.cfg.OnEvent == nil {
		return
	}
	ev.Kind, ev.Status, ev.Reason = kind, status, reason
	m.cfg.OnEvent(ev)
}

// storable reports whether s can be stored in a text column and its
// index: valid UTF-8 without control characters (PostgreSQL refuses NUL and
// invalid UTF-8), at most [MaxRouteLen] bytes.
func storable(s string) bool {
	if len(s) > MaxRouteLen || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return false
		}
	}
	return true
}

// unavailable reports whether err, from the claim, means the store cannot
// be reached right now (see [Config.FailOpen]): a transient failure, or no
// answer within the claim's time bound.
func unavailable(err error) bool {
	return transient(err) || errors.Is(err, context.DeadlineExceeded)
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf.Bytes(), err
}

// writeProblem answers status with a problem of type typ.
func writeProblem(w http.ResponseWriter, typ string, status int, detail string, retryAfter time.Duration) {
	problem.WriteDetails(w, problem.Details{Type: typ, Status: status, Detail: detail}, retryAfter)
}

func replay(w http.ResponseWriter, resp *Response) {
	if resp.NotKept {
		// Not a transient state: no Retry-After, as a retry gets the same.
		writeProblem(w, ProblemResponseNotKept, http.StatusConflict, "The request with this idempotency key was done (status "+
			strconv.Itoa(resp.Status)+"), but its response was too large to keep, so it cannot be replayed; it is not run again.", 0)
		return
	}
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = slices.Clone(v)
	}
	if _, ok := resp.Header["Content-Type"]; !ok {
		// The original carried none (it had no body, or its handler
		// suppressed sniffing): neither does the replay.
		h["Content-Type"] = nil
	}
	h.Set("Idempotent-Replayed", "true")
	if !bodyAllowed(resp.Status) {
		// A 204 or 304 has neither body nor Content-Length (RFC 9110
		// §8.6), even if an older record holds the bytes its handler wrote.
		w.WriteHeader(resp.Status)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// RemoteIP returns the host of r.RemoteAddr, the peer's address, which a
// client cannot spoof (unlike X-Forwarded-For). Behind a proxy, supply an
// [Config.IP] that reads the proxy's header instead.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
