package idem

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Defaults of [StoreConfig] and [Config], applied to zero fields.
const (
	DefaultTTL             = 24 * time.Hour
	DefaultLease           = time.Minute
	DefaultPurgeBatch      = 1000
	DefaultTimeout         = 5 * time.Second
	DefaultHeader          = "Idempotency-Key"
	DefaultMaxRequestBody  = 1 << 20
	DefaultMaxResponseBody = 1 << 20
	DefaultRetryAfter      = time.Second
	DefaultPollInterval    = 50 * time.Millisecond
	DefaultContentType     = "application/json"
)

// representationHeaders are the response headers kept with every stored
// body, besides [Config.ReplayHeaders]: they say how its bytes are read
// (RFC 9110 §8.3–8.5), so a replay without them would change its meaning.
var representationHeaders = []string{"Content-Type", "Content-Encoding", "Content-Language"}

// MaxRouteLen is the longest route and tenant accepted, in bytes. Both are
// stored in indexed columns, whose entries PostgreSQL bounds; a longer one
// is the client's doing (a long path, by default) and gets 400.
const MaxRouteLen = 1024

// StoreConfig configures a [Store]. The zero value means every default.
type StoreConfig struct {
	// TTL is how long a completed response is kept and replayed, counted
	// from completion: "expiresAt" = completion + TTL. Default 24 h.
	TTL time.Duration
	// Lease is how long an in-flight claim blocks its key unless renewed.
	// After it, the claim counts as abandoned (its instance crashed) and
	// the key can be claimed again. The middleware renews the lease every
	// third of it while the handler runs, so a handler may run longer; a
	// handler whose lease was not renewed by the time a fifth of it is left
	// (the store was unreachable) has its context cancelled with
	// [ErrLeaseLost], before any other request can claim the key. It is
	// also how long an instance that crashed blocks its keys. Default 1
	// minute.
	Lease time.Duration
	// Now, when set, is the clock of every lease and TTL decision and of
	// every time written: Now() in UTC, truncated to milliseconds. Tests
	// set it. Default nil: the database's clock (its statement_timestamp()
	// in UTC, truncated to milliseconds), so instances whose clocks
	// disagree still agree on when a lease or a record expires.
	Now func() time.Time
	// PurgeBatch is the number of rows [Store.Purge] deletes per
	// statement. Default 1000.
	PurgeBatch int
	// OnPurge, when set, is called by [Store.Purge] after each batch that
	// deleted rows, with the running total, e.g. to show progress.
	OnPurge func(deleted int64)
	// Timeout bounds each call of Begin, Complete, Renew and Release whose
	// context has no deadline. Every call returns by its deadline plus
	// database.DeadlineSlack, whatever the network or the server does, on
	// a pool opened by database.OpenConfig. Default 5s.
	Timeout time.Duration
}

func (c StoreConfig) resolve() StoreConfig {
	if c.TTL < 0 || c.Lease < 0 || c.PurgeBatch < 0 || c.Timeout < 0 {
		panic(fmt.Sprintf("idem: StoreConfig TTL (%v), Lease (%v), PurgeBatch (%d) and Timeout (%v) must not be negative", c.TTL, c.Lease, c.PurgeBatch, c.Timeout))
	}
	c.TTL = cmp.Or(c.TTL, DefaultTTL)
	c.Lease = cmp.Or(c.Lease, DefaultLease)
	c.PurgeBatch = cmp.Or(c.PurgeBatch, DefaultPurgeBatch)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	if c.Lease < time.Millisecond || c.TTL < time.Millisecond {
		panic("idem: StoreConfig TTL and Lease must be at least 1ms, the precision of the timestamp(3) columns")
	}
	// The statements take whole milliseconds; so does every local deadline
	// derived from them.
	c.TTL, c.Lease = c.TTL.Truncate(time.Millisecond), c.Lease.Truncate(time.Millisecond)
	return c
}

// Config configures [Middleware]. The zero value of each field other than
// Store means its documented default; an invalid value panics when the
// middleware is built.
type Config struct {
	// Store keeps the records. Required.
	Store *Store
	// Transactional runs the handler inside a transaction, which it finds
	// in its request context ([TxFromContext] as a *sql.Tx,
	// ent.TxFromContext as an ent transaction), and stores the response in
	// that same transaction: the handler's writes and the stored response
	// commit together or not at all. The response is held until the commit
	// succeeded, then sent; when nothing committed the client gets a 503
	// to retry (or the handler's own 4xx/5xx failure, rolled back), never a
	// 2xx for work that was rolled back. The transaction first locks the
	// claim's row, so a claim taken over by another instance can never
	// commit; duplicates meanwhile get 409 at once. The lease is not
	// renewed (the connection is the handler's): the handler must finish a
	// fifth of StoreConfig.Lease before the lease ends, or its context is
	// cancelled with [ErrLeaseLost] and its work rolled back. Each request
	// in flight holds one connection of the pool for the whole handler;
	// size the pool for it. The response is held, so Flush and Hijack are
	// not available to the handler, and it cannot fail open (FailOpen).
	// Default false.
	Transactional bool
	// Header is the request header carrying the key. Default
	// "Idempotency-Key".
	Header string
	// Methods are the methods the middleware applies to; requests with
	// other methods pass through untouched. Default POST and PATCH.
	Methods []string
	// Required reports whether a request must carry a key; a request
	// without one then gets 400. Default: never, so requests without a key
	// pass through untouched.
	Required func(r *http.Request) bool
	// Route names the scope of a key when r.Pattern is empty (the
	// middleware wraps a whole mux, or the router is not net/http's).
	// Default: r.URL.EscapedPath(), so each path is its own scope. A route
	// (pattern or Route's) that is not valid UTF-8, holds a control
	// character or is longer than [MaxRouteLen] bytes gets 400 before the
	// store is asked.
	Route func(r *http.Request) string
	// Tenant returns the tenant of a request, stored in "organizationId".
	// Keys are namespaced by tenant: the same key sent by two tenants names
	// two records. A tenant that is not valid UTF-8, holds a control
	// character or is longer than [MaxRouteLen] bytes gets 400, like a
	// route. Default: no tenant ("").
	Tenant func(r *http.Request) string
	// IP returns the client address stored in "ip". Default nil: no
	// address is stored. [RemoteIP] is a safe choice; a value that is not
	// printable UTF-8 of at most [MaxRouteLen] bytes is not stored.
	IP func(r *http.Request) string
	// MaxRequestBody is the largest request body, in bytes, the middleware
	// reads to fingerprint; a larger one gets 413 before the handler runs.
	// Default 1 MiB.
	MaxRequestBody int64
	// MaxResponseBody is the largest response body, in bytes, that is
	// stored. A larger response is still sent in full, and a warning
	// logged. A larger 2xx or 3xx, whose work was done, is stored as done
	// without its response ([Response.NotKept]): a retry gets 409
	// [ProblemResponseNotKept] and the handler does not run again. A larger
	// 4xx is not stored: the claim is released. Default 1 MiB.
	MaxResponseBody int
	// Wait is how long a duplicate of an in-flight request waits for the
	// first to finish, then replays its response (or runs, if the first
	// released its claim). Default 0: answer 409 at once.
	Wait time.Duration
	// PollInterval is how often a waiting duplicate looks at the record.
	// Default 50 ms.
	PollInterval time.Duration
	// RetryAfter is the Retry-After sent with 503, and the least sent with
	// the 409 for a request in flight, whose Retry-After is what is left of
	// the claim's lease (at most one lease). Default 1 s.
	RetryAfter time.Duration
	// DefaultContentType is set on a response whose handler wrote a body
	// without a Content-Type, so the original and its replays carry the
	// same one. Default "application/json".
	DefaultContentType string
	// ReplayHeaders are the response headers stored and replayed besides
	// the representation headers that say how the stored bytes are read,
	// which are always kept with them: Content-Type, Content-Encoding (a
	// gzip body replayed without it would be undecodable bytes) and
	// Content-Language. A response in any content coding is therefore
	// stored as sent, coded, and replayed with its coding, even to a retry
	// whose Accept-Encoding differs. Default: Location.
	ReplayHeaders []string
	// StoreRetry is how long, after the handler has run, the middleware
	// keeps retrying to store its response ([Store.Complete]) or to release
	// its claim ([Store.Release]) through transient failures of the store:
	// a lost or refused connection, a server restart, a lock, deadlock,
	// serialization or statement timeout. The response has already been
	// written to the client by then, so a response not stored leaves the
	// key claimed until the lease ends, after which a retry of the request
	// runs the handler again. Retries back off from 25 ms, doubling up to
	// 500 ms, and none starts past the claim's lease, after which the key
	// may belong to another request; the first attempt always gets at
	// least 5 s, as the fence makes a late attempt safe. Default and
	// maximum: the store's [StoreConfig.Lease]; a negative value disables
	// retries (one attempt, bounded by 5 s).
	StoreRetry time.Duration
	// FailOpen runs the handler without idempotency when the store is
	// unavailable: the claim failed with a transient error (a lost or
	// refused connection, a server shutting down or starting, a lock,
	// deadlock, serialization or statement timeout) or did not answer in
	// time. Any other failure, such as a stored record that cannot be
	// read, still gets 503, and a key held by a concurrent claim still
	// gets 409. Default false: answer 503 and do not run the handler.
	// A claim that timed out may still have committed: the handler then
	// runs unprotected, and the key stays claimed for a lease.
	FailOpen bool
	// Logger receives the middleware's events; no event carries the raw
	// key or a body. Default slog.Default().
	Logger *slog.Logger
	// OnEvent, when set, is called synchronously for each [Event].
	OnEvent func(Event)
}

func (c Config) resolve() Config {
	if c.Store == nil {
		panic("idem: Config.Store is nil; build one with NewStore")
	}
	if c.Transactional && c.FailOpen {
		panic("idem: Config.Transactional and Config.FailOpen together: a transactional handler needs the store's transaction, which a store that is down cannot give; drop FailOpen")
	}
	c.Header = cmp.Or(c.Header, DefaultHeader)
	if strings.ContainsAny(c.Header, " \t\r\n:") {
		panic(fmt.Sprintf("idem: Config.Header %q is not a valid header name", c.Header))
	}
	if len(c.Methods) == 0 {
		c.Methods = []string{http.MethodPost, http.MethodPatch}
	}
	for _, m := range c.Methods {
		if m == "" || strings.ToUpper(m) != m {
			panic(fmt.Sprintf("idem: Config.Methods holds %q; use upper-case method names such as POST", m))
		}
	}
	if c.MaxRequestBody < 0 || c.MaxResponseBody < 0 || c.Wait < 0 || c.PollInterval < 0 || c.RetryAfter < 0 {
		panic("idem: Config sizes and durations must not be negative")
	}
	if c.StoreRetry > c.Store.cfg.Lease {
		panic(fmt.Sprintf("idem: Config.StoreRetry (%v) exceeds the store's lease (%v); retries never run past the lease", c.StoreRetry, c.Store.cfg.Lease))
	}
	c.StoreRetry = cmp.Or(c.StoreRetry, c.Store.cfg.Lease)
	c.MaxRequestBody = cmp.Or(c.MaxRequestBody, DefaultMaxRequestBody)
	c.MaxResponseBody = cmp.Or(c.MaxResponseBody, DefaultMaxResponseBody)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.RetryAfter = cmp.Or(c.RetryAfter, DefaultRetryAfter)
	c.DefaultContentType = cmp.Or(c.DefaultContentType, DefaultContentType)
	if c.ReplayHeaders == nil {
		c.ReplayHeaders = []string{"Location"}
	}
	keep := append([]string(nil), representationHeaders...)
	for _, h := range c.ReplayHeaders {
		if h == "" || strings.ContainsAny(h, " \t\r\n:") {
			panic(fmt.Sprintf("idem: Config.ReplayHeaders holds %q, not a header name", h))
		}
		if h = http.CanonicalHeaderKey(h); !slices.Contains(keep, h) {
			keep = append(keep, h)
		}
	}
	c.ReplayHeaders = keep
	if c.Route == nil {
		c.Route = func(r *http.Request) string { return r.URL.EscapedPath() }
	}
	if c.Tenant == nil {
		c.Tenant = func(*http.Request) string { return "" }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
