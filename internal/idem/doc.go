// Package idem makes unsafe HTTP requests idempotent with an
// Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header), over
// the idempotency_records table, exactly once across every instance that
// shares the database.
//
// It has two layers. A [Store] works without HTTP: [Store.Begin] either
// claims a key, so the caller runs the work, renewing the claim's lease
// with [Store.Renew] if it runs long, and then calls [Store.Complete]
// (store the response) or [Store.Release] (forget the attempt), or returns
// the stored response to replay; [Store.Purge] deletes expired rows.
// [Middleware] builds net/http middleware on it.
//
// # Scope and tenant isolation
//
// A record is unique by ("key", "route"). The route is the request's
// pattern (http.Request.Pattern, set by http.ServeMux when the middleware
// wraps a single route's handler) or, when empty, [Config.Route] of the
// request (by default its escaped path). A route or tenant that is not
// valid UTF-8, holds a control character or exceeds [MaxRouteLen] bytes
// cannot be stored: the request gets 400 and the store is not asked. The
// tenant, from [Config.Tenant], is stored in "organizationId" and also
// namespaces the key: the "key" column
// holds SHA-256(len‖"idem/key/v1"‖len‖tenant‖len‖key) in hex, never the raw
// key. The same key sent by two tenants therefore names two different rows:
// neither tenant can replay, block (409) or even detect the other's request
// (no 422 either), and the raw key, which some clients treat as a secret,
// is neither stored nor logged. Hashing also bounds the indexed value to 64
// bytes.
//
// # Fingerprint
//
// "requestHash" is [Fingerprint]: SHA-256 over the length-framed method,
// route, request target (the escaped path and the raw query), tenant and
// body, with a JSON body in its RFC 8785 (JCS) canonical form, so member
// order, whitespace and the spelling of a number (1, 1.0, 1e0) do not
// matter. JSON that JCS cannot hold faithfully (a lone surrogate escape,
// an integer beyond ±2^53 that a double would round, a number beyond a
// double's range) is hashed as sent. A body whose JSON content type says it
// is JSON, and that is invalid JSON (or not UTF-8) or repeats an object
// member, gets 400 ([ErrBodyInvalid]) before the store is asked. The
// pattern scopes the key, but the target is part of the request: a key
// reused on /accounts/2/charge after /accounts/1/charge (same pattern
// "POST /accounts/{id}/charge", same body), or with ?amount=500 after
// ?amount=5, is another request. A key reused with another fingerprint
// gets [ErrMismatch] (422), whether the first request is done or in
// flight.
//
// The fingerprint is versioned (version 3 is JCS; version 2 kept numbers
// as written). So that a record made by the previous version, in flight or
// completed across a deploy, still matches its retries, the middleware
// compares the previous version's hash too when the current one does not
// match (one more claim statement, on the 422 path only).
//
// # Claims, leases and fencing
//
// The table has no status column. A row whose "responseStatus" is 0 is an
// in-flight claim, and its "expiresAt" is then the end of the claim's
// lease ([StoreConfig.Lease], default 1 minute) instead of the end of the
// record's retention. Begin is one statement: a CTE reads the key's live
// (unexpired) row, and only when there is none does INSERT … ON CONFLICT
// ("key","route") DO UPDATE … WHERE "expiresAt" <= now RETURNING claim the
// key. A replay, 409 or 422 is thus a single read that takes no lock and
// writes nothing. PostgreSQL's unique index and the row lock that ON
// CONFLICT takes make the claim atomic: of concurrent claimers exactly one
// inserts (or takes over an expired row), and the others see its row, as
// a claim in flight ([ErrInFlight], 409) or a response (replay). There is
// no check-then-insert and no unique violation can surface. A claimer
// whose snapshot predates the winner's commit gets no row back and runs
// the statement again. A row past "expiresAt" is treated as absent and
// taken over by the same statement: a completed record past its TTL, or a
// claim whose instance crashed, once its lease has run out. The Store
// prepares its statements once per connection, except on a pool opened
// with pgbouncer=true, where each travels unnamed (database.Statements).
//
// Every time is the database's: the statements write and compare
// statement_timestamp() in UTC, truncated to milliseconds like the
// timestamp(3) columns, so instances whose clocks disagree still agree on
// when a lease or a record expires ([StoreConfig.Now] replaces that clock
// in tests).
//
// Each claim writes a new cuid into the row's "id": that id is the claim's
// fencing token. Renew, Complete and Release act only on the row with their
// claim's id and "responseStatus" 0 (Complete also on the row already
// holding its own identical response, so it is idempotent), so an instance
// that outlived its lease, whose key another instance has re-claimed,
// cannot overwrite or delete the new claim: it gets [ErrClaimLost]. The
// handler runs between two autocommitted statements; no connection or
// transaction is held while it runs. The middleware runs Begin detached
// from the request's context, bounded by a few seconds, so that a claim
// written just as its client went away is seen and released at once
// instead of blocking its key for a lease.
//
// Nothing in net/http bounds how long a handler runs (WriteTimeout only
// bounds writes to the client), so the middleware keeps the lease alive
// instead: every third of the lease while the handler runs, one short
// fenced UPDATE ([Store.Renew]) moves "expiresAt" a lease ahead, holding no
// connection between renewals. A handler may thus run for many leases
// without a duplicate running it again. When a renewal finds the claim
// gone, or none has succeeded when a fifth of the lease is left (the store
// is unreachable or partitioned away; transient failures are retried until
// then), the middleware cancels the handler's request context with the
// cause [ErrLeaseLost]. It does so on its own clock, from a timer that
// waits for no statement and no driver, and a margin (a fifth of the lease)
// before any other request can claim the key: the local deadline is counted
// from before the claim statement was sent, so it falls no later than the
// lease's end by the database's clock. If the handler still writes after
// that, the write is reported ([EventLateWrite]); a 2xx means its work was
// done, and the middleware stores the answer fenced by the claim, so it
// lands only if no other request has claimed the key since. Any other
// answer is not stored, and what is left of the claim is released; a
// handler that returns without an answer gets its client a 503 to retry.
// A handler that ignores its context for longer than the margin can run
// alongside a second one, so handlers should heed it.
//
// The response has reached the client before it is stored, so the
// middleware retries Complete (and Release) through transient failures of
// the store, with a capped backoff, until [Config.StoreRetry] (default: the
// lease) or the claim's lease ends; the first attempt always gets a few
// seconds, as the fence makes a late one safe. A response that still could
// not be stored leaves the key claimed until the lease ends, and a retry of
// the request after that runs the handler again: an outage of the store
// longer than the lease, right after a handler ran, and a lost lease whose
// handler ignores its context, are the cases where a key runs twice.
//
// # What is stored
//
// Completing sets "responseStatus" to the response's status, "expiresAt"
// to completion + [StoreConfig.TTL] (default 24 h), and
// "responseBodyJson" to an envelope, as the table has no column for
// headers:
//
//	{"v":1,"header":{"Content-Type":["application/json"]},"body":"{\"id\":1}"}
//
// The body is what was sent: none for a 204 or 304, whatever their
// handler wrote, as net/http sends none. It is kept as a JSON string when
// it is UTF-8, which round-trips byte for byte, and as "bodyBase64"
// otherwise. Header values likewise: a
// header with a value that is not UTF-8 (obs-text) is kept in
// "headerBase64", which makes the envelope version 2; any other response
// is written as version 1, and both are read. The headers kept are the
// ones that say how the stored bytes are read, Content-Type,
// Content-Encoding and Content-Language (RFC 9110 §8.3–8.5), so a gzip
// body is replayed with its coding rather than as undecodable bytes, and
// [Config.ReplayHeaders] (default Location). A handler that writes or flushes a body without a Content-Type gets
// [Config.DefaultContentType] (JSON) set on the original response before
// its headers are sent, so original and replay agree, and net/http sniffs
// neither.
//
// The middleware stores every final response below 500: 2xx and 4xx, and
// also 3xx (a 303 after a POST is a completed request; running it again
// would repeat its effect). It stores nothing and releases the claim, so
// the client can retry, for a 5xx, a handler panic (the panic then goes on
// up), a handler that hijacked the connection (its answer bypassed the
// middleware), a 4xx with a body over [Config.MaxResponseBody] (default 1
// MiB, with a warning), a lost lease (see above),
// and a request whose context was cancelled before the handler returned,
// unless the handler still wrote a 2xx status: the work was done, so
// that response is stored and a retry replays it. A replay sends the stored
// status, headers and bytes, plus Idempotent-Replayed: true.
//
// A 2xx or 3xx with a body over [Config.MaxResponseBody] was done, so its
// key stays done; as a truncated body is never replayed, the record says
// only that the response was not kept, in an envelope of version 3
// ({"v":3,"notKept":true}, with the status sent in "responseStatus"). A
// retry gets 409 [ProblemResponseNotKept], without Retry-After, and the
// handler never runs a second time. An instance that reads only versions
// 1 and 2 answers such a record with 503, never with a replay or a run. Request
// bodies over [Config.MaxRequestBody] (1 MiB) get 413 before the handler
// runs; the handler reads the whole body the middleware fingerprinted.
//
// # In flight
//
// A duplicate of a request in flight gets 409 with Retry-After: what is
// left of the claim's lease by the store's clock (one more query, on this
// path only), by when the key is answered or, if its instance died,
// claimable; at least [Config.RetryAfter] and at most one lease. With [Config.Wait] set, it instead polls the
// record every [Config.PollInterval] for up to Wait and replays the
// response (or runs the request itself if the first released its claim),
// and gets the 409 only when Wait runs out. Polling costs one indexed
// query per interval and needs no dedicated connection, unlike LISTEN.
//
// # Problem types
//
// Every answer of the middleware's own is an RFC 9457
// application/problem+json body whose "title" is RFC 9110's reason phrase
// for its status and whose "type" is one of these stable URIs, so that a
// client can tell the middleware's 409 from its handler's:
//
//   - [ProblemKeyMissing], https://klozd.dev/problems/idempotency-key-missing
//     (400): [Config.Required] asks for a key and none was sent.
//   - [ProblemKeyInvalid], …/idempotency-key-invalid (400): the key is
//     malformed, sent in several fields, or a list.
//   - [ProblemRequestInvalid], …/idempotency-request-invalid (400): the
//     body cannot be read, the route or tenant cannot be stored, or a body
//     of a JSON type is invalid JSON or repeats a member.
//   - [ProblemRequestTooLarge], …/idempotency-request-too-large (413): the
//     body exceeds [Config.MaxRequestBody].
//   - [ProblemKeyMismatch], …/idempotency-key-mismatch (422): the key was
//     used with another request; send a new key.
//   - [ProblemInFlight], …/idempotency-key-in-flight (409, Retry-After): a
//     request with the key is being processed; retry later.
//   - [ProblemResponseNotKept], …/idempotency-response-not-kept (409, no
//     Retry-After): the request with the key was done, but its response was
//     too large to keep and cannot be replayed; it does not run again.
//   - [ProblemStoreUnavailable], …/idempotency-store-unavailable (503,
//     Retry-After): keys cannot be checked; the handler did not run.
//   - [ProblemRequestStopped], …/idempotency-request-stopped (503,
//     Retry-After): the handler was stopped, its lease lost, before it
//     answered; retry with the same key.
//   - [ProblemNotCommitted], …/idempotency-not-committed (503,
//     Retry-After): on a transactional route, nothing committed, or the
//     commit's outcome was lost; retry with the same key.
//   - [ProblemResponseTooLarge], …/idempotency-response-too-large (500): on
//     a transactional route, the response exceeded what is held until the
//     commit; nothing was done.
//
// # Failures and observability
//
// When the store fails, the middleware answers 503 problem+json and does
// not run the handler (fail closed). [Config.FailOpen] runs the handler
// instead, but only when the store is unavailable (a transient failure or
// no answer in time), never for a record that cannot be read (still 503)
// or a key held by another claim (409). Errors name the operation and wrap
// their cause. Events go to [Config.Logger] and [Config.OnEvent]; they
// identify a key by its stored hash, and never carry the raw key or a
// body. "ip" is stored only when [Config.IP] is set.
package idem
