package idem

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klozd/api/ent/schema"
	"github.com/klozd/api/internal/database"
)

// Conditions reported by [Store.Begin], [Store.Complete] and
// [Store.Release]. Any other error is a failure of the store.
var (
	// ErrInFlight reports that another claim on the key is running and its
	// lease has not expired. Retry later.
	ErrInFlight = errors.New("idem: a request with this key is in flight; retry after it finishes")
	// ErrMismatch reports that the key was used with another request
	// fingerprint (payload, method, route or tenant). Use a new key.
	ErrMismatch = errors.New("idem: key reused with a different request; send a new key for a new request")
	// ErrClaimLost reports that a claim's lease expired and its row was
	// re-claimed or purged: its response cannot be stored or released. The
	// middleware renews the lease while the handler runs, so this follows
	// a store outage longer than the lease.
	ErrClaimLost = errors.New("idem: claim lost: its lease expired and the key was re-claimed or purged")
	// ErrLeaseLost is the cause ([context.Cause]) with which the middleware
	// cancels a handler's request context when the handler's claim was not
	// renewed by the time a fifth of its lease was left (the store was
	// unreachable) or another claim replaced it: another request with the
	// key may run once the lease ends, so the handler should stop now. Its response is stored only if it is a 2xx
	// and no other request has claimed the key since.
	ErrLeaseLost = errors.New("idem: lease lost: the claim could not be renewed before its lease ended, or was replaced")
)

// beginAttempts bounds the retries of the claim statement when it sees
// neither its own insert nor a committed row (see [Store.Begin]).
const beginAttempts = 5

// Store keeps idempotency records in the idempotency_records table. It is
// safe for concurrent use by any number of goroutines and instances sharing
// the database; every operation is a single autocommitted statement, so no
// connection is held between them.
type Store struct {
	db    *sql.DB
	cfg   StoreConfig
	stmts *database.Statements
}

// NewStore returns a Store on db, a pool opened by database.Open (its
// sessions must run with timezone=UTC). It panics, with an "idem:" prefix,
// when db is nil or cfg is invalid.
func NewStore(db *sql.DB, cfg StoreConfig) *Store {
	if db == nil {
		panic("idem: NewStore needs a *sql.DB")
	}
	return &Store{db: db, cfg: cfg.resolve(), stmts: database.NewStatements(db)}
}

// Close releases the Store's prepared statements. It does not close the
// *sql.DB, which the caller owns; a Store used after Close prepares again.
func (s *Store) Close() error {
	if err := s.stmts.Close(); err != nil {
		return fmt.Errorf("idem: close statements: %w", err)
	}
	return nil
}

// prepared returns the statement for query (see [database.Statements]).
func (s *Store) prepared(ctx context.Context, query string) (database.Stmt, error) {
	st, err := s.stmts.Get(ctx, query)
	if err != nil {
		return st, fmt.Errorf("prepare: %w", err)
	}
	return st, nil
}

// Request identifies a request to [Store.Begin].
type Request struct {
	// Key is the client's idempotency key, as [ParseKey] returns it.
	Key string
	// Route is the scope of the key, such as the route pattern.
	Route string
	// Tenant is the tenant the key belongs to, "" for none. It namespaces
	// the key and is stored in "organizationId".
	Tenant string
	// Fingerprint is the request hash, as [Fingerprint] returns it.
	Fingerprint string
	// IP is stored in "ip" when not empty.
	IP string
}

// Response is a stored response.
type Response struct {
	// Status is the HTTP status code, 100 to 599.
	Status int
	// Header holds the stored headers (Content-Type and the configured
	// replay headers).
	Header http.Header
	// Body is the body, byte for byte.
	Body []byte
	// NotKept records a response that was sent but was too large to keep
	// (over [Config.MaxResponseBody]): Status is the status sent, Header
	// and Body are empty. Its request was done, so its key must not run
	// again; the middleware replays it as [ProblemResponseNotKept]. It is
	// stored as a version 3 envelope (see envelope.go).
	NotKept bool
}

// Claim is the right to run the request of a key once, obtained from
// [Store.Begin]. It ends with [Store.Complete] or [Store.Release]; if
// neither happens (the instance crashed) it ends when its lease expires.
// [Store.Renew] extends the lease.
type Claim struct {
	token string // the row's "id", new for each claim: the fencing token
	key   string // the stored key
	route string

	mu        sync.Mutex
	expiresAt time.Time // "expiresAt" of the row, on the store's clock
	deadline  time.Time // a local time no later than expiresAt, see lease
}

// LeaseExpiresAt returns when the claim stops blocking its key, as the
// store's clock (the database's, unless [StoreConfig.Now] is set) counts.
func (c *Claim) LeaseExpiresAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expiresAt
}

func (c *Claim) setLease(expiresAt, deadline time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expiresAt, c.deadline = expiresAt, deadline
}

// leaseDeadline returns the claim's lease end on the clock of
// [Store.clock]; see [Store.lease].
func (c *Claim) leaseDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline
}

// Result is the outcome of [Store.Begin]: exactly one field is set.
type Result struct {
	// Claim, when set, means the caller runs the request and then calls
	// Complete or Release.
	Claim *Claim
	// Replay, when set, is the stored response to send again.
	Replay *Response
}

// dbNow is the database's clock as the columns hold time: UTC, truncated to
// milliseconds. It is stable within a statement. Each statement below takes
// the time as a parameter that is NULL unless [StoreConfig.Now] is set, and
// durations as milliseconds.
const dbNow = `date_trunc('milliseconds', statement_timestamp() AT TIME ZONE 'UTC')`

// The claim statement. "live" reads the key's row; when the statement's
// snapshot shows it unexpired, the INSERT's source is empty and the
// statement only reads: a replay (or a 409, or a 422) is one query that
// takes no lock and writes nothing. Otherwise the INSERT claims the key;
// ON CONFLICT takes over the row only when it has expired (a completed
// record past its TTL, or an in-flight claim past its lease), giving it a
// new id, the fencing token. The unique index and the row lock ON CONFLICT
// takes serialise concurrent claimers, so exactly one wins. A claimer that
// loses to a row committed after its snapshot gets no row back at all, and
// Begin runs the statement again with a fresh snapshot.
const beginSQL = `WITH live AS (
	SELECT "id", "requestHash", "responseStatus", "responseBodyJson", "expiresAt"
	FROM idempotency_records
	WHERE "key" = $2 AND "route" = $3 AND "expiresAt" > COALESCE($5::timestamp, ` + dbNow + `)
), claimed AS (
	INSERT INTO idempotency_records AS r
		("id", "key", "route", "requestHash", "responseStatus", "responseBodyJson", "createdAt", "expiresAt", "organizationId", "ip")
	SELECT $1, $2, $3, $4, 0, '', now.t, now.t + $6::bigint * interval '1 millisecond', $7, $8
	FROM (SELECT COALESCE($5::timestamp, ` + dbNow + `) AS t) AS now
	WHERE NOT EXISTS (SELECT 1 FROM live)
	ON CONFLICT ("key", "route") DO UPDATE SET
		"id" = EXCLUDED."id",
		"requestHash" = EXCLUDED."requestHash",
		"responseStatus" = 0,
		"responseBodyJson" = '',
		"createdAt" = EXCLUDED."createdAt",
		"expiresAt" = EXCLUDED."expiresAt",
		"organizationId" = EXCLUDED."organizationId",
		"ip" = EXCLUDED."ip"
	WHERE r."expiresAt" <= EXCLUDED."createdAt"
	RETURNING r."id", r."expiresAt"
)
SELECT true, "id", '', 0, '', "expiresAt" FROM claimed
UNION ALL
SELECT "id" = $1 AND "responseStatus" = 0, "id", "requestHash", "responseStatus", "responseBodyJson", "expiresAt" FROM live`

// now returns the time parameter of the store's statements: NULL, for the
// database's clock, unless [StoreConfig.Now] is set.
func (s *Store) now() any {
	if s.cfg.Now == nil {
		return nil
	}
	return schema.UTCMillis(s.cfg.Now())
}

// clock returns the time on the clock that [Claim.leaseDeadline] is kept
// on: [StoreConfig.Now] when set, else the local monotonic clock.
func (s *Store) clock() time.Time {
	if s.cfg.Now == nil {
		return time.Now()
	}
	return s.cfg.Now()
}

// lease returns the local deadline of a lease that a statement sent at sent
// (on [Store.clock]) set to expiresAt. With an injected clock it is
// expiresAt. On the database's clock, the statement ran after it was sent,
// so sent + Lease, less the millisecond the truncation may cost, is never
// later than expiresAt, whatever the skew between the two clocks.
func (s *Store) lease(sent, expiresAt time.Time) time.Time {
	if s.cfg.Now != nil {
		return expiresAt
	}
	return sent.Add(s.cfg.Lease - time.Millisecond)
}

// leaseLeft returns how long c's lease still runs, by [Store.clock].
func (s *Store) leaseLeft(c *Claim) time.Duration { return c.leaseDeadline().Sub(s.clock()) }

// Begin claims the key of req, or returns the response stored for it. It
// returns [ErrMismatch] when the key's live record has another fingerprint,
// and an [*InFlightError], which is [ErrInFlight], when a live claim holds
// it. An expired record or
// abandoned claim is replaced atomically. It is one statement, retried only
// in the rare race where the statement's snapshot predates a concurrent
// claimer's commit and so sees no row at all (when every attempt loses that
// race, the error wraps ErrInFlight too), and when the connection broke
// after the statement was sent: every attempt carries the same fencing
// token, so an attempt finds the claim an earlier one made as its own
// rather than as a request in flight. When Begin gives up on an outcome it
// cannot know (the reply lost for good, the context ended), it removes the
// claim it may have made, best effort, so that the key can be retried at
// once.
func (s *Store) Begin(ctx context.Context, req Request) (Result, error) {
	ctx, cancel := database.Bound(ctx, s.cfg.Timeout)
	defer cancel()
	if req.Fingerprint == "" {
		return Result{}, errors.New("idem: begin: Request.Fingerprint is empty; compute it with Fingerprint")
	}
	key := storedKey(req.Tenant, req.Key)
	st, err := s.prepared(ctx, beginSQL)
	if err != nil {
		return Result{}, fmt.Errorf("idem: begin key %.12s on %q: %w", key, req.Route, err)
	}
	// One token for every attempt: an attempt whose outcome was lost (the
	// connection broke after it was sent) is run again, and finds the
	// claim it made, if it made one, as its own.
	token, sent := schema.NewID(), s.clock()
	for range beginAttempts {
		var (
			claimed bool
			id      string
			hash    string
			status  int
			body    string
			expires sql.NullTime
		)
		var err error
		for range beginAttempts {
			err = st.QueryRow(ctx, token, key, req.Route, req.Fingerprint,
				s.now(), s.cfg.Lease.Milliseconds(), nullString(req.Tenant), nullString(req.IP)).
				Scan(&claimed, &id, &hash, &status, &body, &expires)
			if !errors.Is(err, database.ErrOutcomeUnknown) || ctx.Err() != nil {
				break
			}
		}
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			if ambiguous(err) {
				// A claim may have been made that nobody will finish:
				// remove it, so that the key can be retried at once.
				go s.forget(token)
			}
			return Result{}, fmt.Errorf("idem: begin key %.12s on %q: %w", key, req.Route, err)
		case claimed:
			c := &Claim{token: id, key: key, route: req.Route}
			// sent is before the first attempt, which set expiresAt if
			// it was the one that claimed.
			c.setLease(expires.Time.UTC(), s.lease(sent, expires.Time.UTC()))
			return Result{Claim: c}, nil
		case hash != req.Fingerprint:
			return Result{}, ErrMismatch
		case status == 0:
			return Result{}, &InFlightError{ExpiresAt: expires.Time.UTC()}
		}
		resp, err := decodeResponse(status, body)
		if err != nil {
			return Result{}, fmt.Errorf("idem: begin key %.12s on %q: %w", key, req.Route, err)
		}
		return Result{Replay: resp}, nil
	}
	// Each attempt lost to a claimer that committed after its snapshot: the
	// key is being claimed, as good as in flight.
	return Result{}, fmt.Errorf("idem: begin key %.12s on %q: no row after %d attempts under contention: %w", key, req.Route, beginAttempts, ErrInFlight)
}

// forgetTimeout bounds the removal of a claim whose outcome is unknown.
const forgetTimeout = 2 * time.Second

// forget deletes the in-flight claim with token, if there is one: the
// claim of a Begin whose outcome was lost and that gave up. Best effort:
// when it cannot reach the store, the claim blocks its key until its lease
// ends.
func (s *Store) forget(token string) {
	ctx, cancel := context.WithTimeout(context.Background(), forgetTimeout)
	defer cancel()
	if st, err := s.prepared(ctx, releaseSQL); err == nil {
		_, _ = st.Exec(ctx, token)
	}
}

// ambiguous reports whether a statement that failed with err may have run:
// its connection broke after it was sent, or the call gave up while it ran.
func ambiguous(err error) bool {
	return errors.Is(err, database.ErrOutcomeUnknown) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || database.SQLState(err) == database.QueryCanceled
}

// completeSQL stores a response under a claim. The row's id is the claim's
// fencing token, new for each claim, so a row with that id whose response
// is already $2 and $3 can only hold this claim's own completion: matching
// it too makes Complete idempotent, so a retry after a lost reply succeeds.
const completeSQL = `UPDATE idempotency_records
SET "responseStatus" = $2, "responseBodyJson" = $3,
	"expiresAt" = COALESCE($4::timestamp, ` + dbNow + `) + $5::bigint * interval '1 millisecond'
WHERE "id" = $1 AND ("responseStatus" = 0 OR ("responseStatus" = $2 AND "responseBodyJson" = $3))`

// Complete stores resp as the response of c's key, to be replayed until
// TTL after now. It is idempotent: calling it again with the same response
// after it succeeded (say, when the reply to the first call was lost)
// succeeds too. It returns [ErrClaimLost] when c is no longer the key's
// claim (its lease expired and another instance re-claimed the key, or the
// row was purged): the row's id is c's fencing token.
func (s *Store) Complete(ctx context.Context, c *Claim, resp Response) error {
	ctx, cancel := database.Bound(ctx, s.cfg.Timeout)
	defer cancel()
	if resp.Status < 100 || resp.Status > 599 {
		return fmt.Errorf("idem: complete key %.12s: status %d is not an HTTP status", c.key, resp.Status)
	}
	body, err := encodeResponse(resp)
	if err != nil {
		return fmt.Errorf("idem: complete key %.12s: %w", c.key, err)
	}
	st, err := s.prepared(ctx, completeSQL)
	if err != nil {
		return fmt.Errorf("idem: complete key %.12s on %q: %w", c.key, c.route, err)
	}
	res, err := st.Exec(ctx, c.token, resp.Status, body, s.now(), s.cfg.TTL.Milliseconds())
	if err != nil {
		return fmt.Errorf("idem: complete key %.12s on %q: %w", c.key, c.route, err)
	}
	return affectedOne(res, "complete", c)
}

// renewSQL extends a claim's lease, fenced like completeSQL: only the row
// with the claim's id and still in flight.
const renewSQL = `UPDATE idempotency_records
SET "expiresAt" = COALESCE($2::timestamp, ` + dbNow + `) + $3::bigint * interval '1 millisecond'
WHERE "id" = $1 AND "responseStatus" = 0
RETURNING "expiresAt"`

// Renew extends c's lease to [StoreConfig.Lease] from now, so that a
// request running longer than one lease keeps its key. It is one
// autocommitted statement; the middleware calls it every third of the
// lease while the handler runs. It returns [ErrClaimLost] when c is no
// longer the key's claim (another instance re-claimed the key after the
// lease expired, or the row was completed, released or purged).
func (s *Store) Renew(ctx context.Context, c *Claim) error {
	ctx, cancel := database.Bound(ctx, s.cfg.Timeout)
	defer cancel()
	st, err := s.prepared(ctx, renewSQL)
	if err != nil {
		return fmt.Errorf("idem: renew key %.12s on %q: %w", c.key, c.route, err)
	}
	sent := s.clock()
	var expires time.Time
	err = st.QueryRow(ctx, c.token, s.now(), s.cfg.Lease.Milliseconds()).Scan(&expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("idem: renew key %.12s on %q: %w", c.key, c.route, ErrClaimLost)
	case err != nil:
		return fmt.Errorf("idem: renew key %.12s on %q: %w", c.key, c.route, err)
	}
	c.setLease(expires.UTC(), s.lease(sent, expires.UTC()))
	return nil
}

const releaseSQL = `DELETE FROM idempotency_records WHERE "id" = $1 AND "responseStatus" = 0`

// Release gives up c, deleting its row, so the next request with the key
// runs. It returns [ErrClaimLost] when c is no longer the key's claim, which
// is also what a second Release of c returns: a caller retrying Release
// after a transient error should take ErrClaimLost as success.
func (s *Store) Release(ctx context.Context, c *Claim) error {
	ctx, cancel := database.Bound(ctx, s.cfg.Timeout)
	defer cancel()
	st, err := s.prepared(ctx, releaseSQL)
	if err != nil {
		return fmt.Errorf("idem: release key %.12s on %q: %w", c.key, c.route, err)
	}
	res, err := st.Exec(ctx, c.token)
	if err != nil {
		return fmt.Errorf("idem: release key %.12s on %q: %w", c.key, c.route, err)
	}
	return affectedOne(res, "release", c)
}

func affectedOne(res sql.Result, op string, c *Claim) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("idem: %s key %.12s on %q: %w", op, c.key, c.route, err)
	}
	if n == 0 {
		return fmt.Errorf("idem: %s key %.12s on %q: %w", op, c.key, c.route, ErrClaimLost)
	}
	return nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// envelope is the JSON document kept in "responseBodyJson", as the table
// has no column for headers. A UTF-8 body is kept as a JSON string, which
// round-trips exactly; any other body as base64. Header values are kept the
// same way: a header whose values are all UTF-8 in "header", any other in
// "headerBase64", so that obs-text bytes come back as they were sent
// instead of as U+FFFD. Version 1 has no "headerBase64"; an envelope that
// needs it is version 2, and every other is still written as version 1, so
// that an instance that reads only version 1 can replay it.
type envelope struct {
	V            int                 `json:"v"`
	Header       http.Header         `json:"header,omitempty"`
	HeaderBase64 map[string][][]byte `json:"headerBase64,omitempty"`
	Body         string              `json:"body,omitempty"`
	BodyBase64   []byte              `json:"bodyBase64,omitempty"`
	NotKept      bool                `json:"notKept,omitempty"`
}

func encodeResponse(resp Response) (string, error) {
	if resp.NotKept {
		return encodeNotKept()
	}
	env := envelope{V: 1}
	for k, vs := range resp.Header {
		if !slices.ContainsFunc(vs, func(v string) bool { return !utf8.ValidString(v) }) {
			if env.Header == nil {
				env.Header = make(http.Header, len(resp.Header))
			}
			env.Header[k] = vs
			continue
		}
		if env.HeaderBase64 == nil {
			env.V, env.HeaderBase64 = 2, make(map[string][][]byte)
		}
		for _, v := range vs {
			env.HeaderBase64[k] = append(env.HeaderBase64[k], []byte(v))
		}
	}
	if utf8.Valid(resp.Body) {
		env.Body = string(resp.Body)
	} else {
		env.BodyBase64 = resp.Body
	}
	b, err := json.Marshal(env)
	if err != nil {
		return "", fmt.Errorf("encode response: %w", err)
	}
	return string(b), nil
}

func decodeResponse(status int, data string) (*Response, error) {
	var env envelope
	if err := json.Unmarshal([]byte(data), &env); err != nil || (env.V != 1 && env.V != 2 && env.V != envelopeNotKept) {
		return nil, fmt.Errorf("stored response is not a version 1, 2 or 3 envelope (%v); delete the row to let the key run again", err)
	}
	if env.V == envelopeNotKept {
		return decodeNotKept(status, env)
	}
	resp := &Response{Status: status, Header: env.Header, Body: env.BodyBase64}
	for k, vs := range env.HeaderBase64 {
		if resp.Header == nil {
			resp.Header = make(http.Header, len(env.HeaderBase64))
		}
		for _, v := range vs {
			resp.Header[k] = append(resp.Header[k], string(v))
		}
	}
	if resp.Body == nil {
		resp.Body = []byte(env.Body)
	}
	return resp, nil
}
