// Package lockout protects logins against password guessing. It counts
// failed logins in the auth_attempts table, one row per (email, ip), and
// decides whether the next attempt may proceed, combining three limits:
//
//   - per (email, ip): [Policy.MaxFailures] failures lock the pair for
//     [Policy.LockDuration]; each further run of MaxFailures failures locks
//     it again for twice as long, up to [Policy.MaxLockDuration]. With the
//     defaults: 5 failures lock for 15 min, 10 for 30 min, 15 for 1 h, …,
//     capped at 24 h. In general the lock set when the count reaches
//     k×MaxFailures lasts min(LockDuration × 2^(k−1), MaxLockDuration).
//   - per email, over all IPs ([Policy.EmailLimit]), against slow attacks
//     spread over many addresses;
//   - per IP, over all emails ([Policy.IPLimit]), against credential
//     stuffing from one address. IPv6 clients count by prefix (/64 by
//     default), as one host usually holds a whole /64; IPv4-mapped IPv6
//     addresses count as the IPv4 address, so a dual-stack proxy does not
//     put every IPv4 client in one bucket.
//
// A counter starts over after [Policy.Window] without failures, measured
// from the pair's last failure, or from the end of its lock when later.
// [Service.RecordSuccess] resets the pair; operators use
// [Service.UnlockPair], [Service.UnlockEmail] and [Service.UnlockIP], and
// [Service.Status] for an admin view. [Service.Purge] deletes stale rows.
//
// # Use
//
// A login handler calls, in this order (see the example):
//
//  1. [Service.Check]; if its decision denies, it answers as for a wrong
//     password without verifying it;
//  2. [Service.RecordFailure], before it verifies the password, so that
//     the attempt is counted atomically before it is tried; if the
//     decision's [Decision.Admitted] is false, it answers as for a wrong
//     password without verifying it;
//  3. it verifies the password and, when it is right,
//     [Service.RecordSuccess], which resets the pair (the failure counted
//     in step 2 with it).
//
// This flow verifies exactly [Policy.MaxFailures] passwords per run of a
// pair, also under a concurrent burst: RecordFailure's count of a pair is
// exact, and only the attempts up to the one that sets the lock are
// admitted. Admitted, not Allowed, says whether the counted attempt may be
// tried: Allowed is the decision for the next attempt, so going by it
// would verify MaxFailures−1 passwords (none under MaxFailures 1). The
// per-email and per-IP limits are sums read from a snapshot: under this
// flow the attempt that reaches one is not admitted, and under
// concurrency a few attempts may pass one late. Check (step 1) keeps an
// attempt that meets a standing denial from writing a row. A success
// costs a write more than in the flow below.
//
// The shorter flow, Check, then the password, then RecordFailure when it
// is wrong or RecordSuccess when it is right, verifies MaxFailures
// passwords per run one attempt at a time, but Check is a read: attempts
// already past it when a lock lands still get their password verified
// (the failures they record are all counted), so a concurrent burst gets
// as many passwords verified as it has attempts in flight.
//
// [ClientIP] takes the client address from the request without trusting
// forgeable headers.
//
// # Enumeration safety
//
// Decisions never depend on whether the account exists: the service never
// looks at users, and unknown emails are counted like known ones. Answer a
// denied attempt exactly as a wrong password (same status, same body, and
// without verifying the password, in about the same time), so that the
// lock itself does not reveal that an account exists or what it is being
// attacked with. Deployments that prefer an explicit answer can use
// [WriteDenied] (429 with Retry-After); it too answers every email alike.
//
// # One counter per account
//
// An email is counted under the key [NormalizeEmail] returns, which folds
// the spellings a user table could match to one account: case (with full
// Unicode case folding, so "ß" is "ss"), width ("ａｎｎ" is "ann"),
// canonical composition, and in the domain compatibility characters and
// the IDNA dots. Local parts are prepared with the PRECIS IdentifierClass
// (RFC 8264, the class of RFC 8265's usernames) and what it disallows is
// refused: circled letters, symbols, spaces, and ZWJ or ZWNJ outside the
// scripts that need them. A refused email gets an [*EmailError], a denying
// decision and no row, so a variant can never buy an attacker a counter
// of its own. The domain is prepared per label rather than with the whole
// address, so that the Bidi Rule judges each label (a left-to-right local
// part with an Arabic domain is valid) and compatibility characters map
// there as IDNA's UTS #46 maps them instead of being refused; A-labels
// ("xn--…") are not decoded, which would need an IDNA implementation.
//
// Rows written before this folding keep the key they were written under.
// A user whose address folds differently now (any non-ASCII address that
// changes, "ß" to "ss" for example; an ASCII address without spaces keeps
// its key) starts a fresh counter once: the old row no longer counts,
// [Service.Status] and the Unlock calls no longer find it, and
// [Service.Purge] deletes it once its window and lock are over. Addresses
// now refused (a space in the local part, a ZWJ in an ASCII name) cannot
// log in through a handler that acts on the decision; such accounts need
// their address changed.
//
// # The per-email limit: trade-off
//
// A per-account limit lets an attacker lock a victim out by failing on
// purpose (OWASP). Without it, a botnet can try a few passwords per IP for
// ever. This package keeps the limit but makes it weak as a denial of
// service:
//
//   - it is a shorter lock: not stored, never growing; it ends as soon as
//     the failures within the window fall below the limit, at most
//     [Policy.Window] (15 min) after the last failure that keeps it there,
//     so an attacker must keep failing to keep the victim out, feeding the
//     per-IP limit and the pair locks as they go;
//   - each (email, ip) row contributes at most MaxFailures to it, so one
//     address alone can never trip it (with the defaults, 4 distinct IPs or
//     /64 prefixes are needed), and a user fumbling their own password only
//     locks their own pair;
//   - it is off with EmailLimit = [Off] for deployments that favour
//     availability (e.g. with a second factor).
//
// The default of 20 per 15 min stays under ASVS V2.2.1's 100 failures per
// hour per account.
//
// # Atomicity
//
// A failure with a known IP is one statement: an upsert on the unique
// (email, ip) index whose UPDATE computes the new count, the window reset
// and the lock from the locked row, so concurrent failures are serialised
// by the row lock and none is lost; the statement returns the row and the
// per-email and per-IP state. The unique index does not cover NULL, so a
// failure with an unknown IP takes a transaction-scoped advisory lock on
// the email, then updates the (email, NULL) row or inserts it. Failures
// recorded while a pair is locked are counted (they bring the next, longer
// lock nearer) but do not move the current lock unless
// [Policy.ExtendWhileLocked] is set. The per-email and per-IP limits are
// sums over rows read from the statement's snapshot, so under concurrency
// they may deny a few failures late; the per-pair count is exact.
//
// The statements are written for READ COMMITTED, PostgreSQL's default.
// Where a role or database defaults to a stronger isolation, the unknown-IP
// transaction asks for READ COMMITTED, and any other write (the known-IP
// upsert, a success, an unlock, a purge batch) that fails with a
// serialization error runs again in a READ COMMITTED transaction; no
// failure or reset is lost either way.
//
// The unique index does not stop two (email, NULL) rows, which data
// written before this service may hold: a failure with an unknown IP then
// counts on the row with the latest lock, and Check reads that lock. Each
// such row still counts towards the per-email limit.
//
// # Database
//
// The service needs the auth_attempts table of the module's migrations and
// a *sql.DB opened by database.OpenConfig, on lib/pq or pgx. Check and
// RecordFailure run prepared statements, prepared on first use and again
// on each new connection, so the long lockout SQL is parsed and planned
// once per connection. On a pool opened with pgbouncer=true (PgBouncer in
// transaction pooling) nothing is prepared: each statement travels
// unnamed in one round trip and is planned at each call (see
// database.Statements and docs/topologies.md).
//
// The per-email and per-IP limits read every row of that email or IP
// within the window through the table's email and ip indexes, so their
// cost grows with the rows one email or IP has in the window (about 1 ms
// at a thousand rows). The table's indexes are fixed by the original
// migration; a deployment that faces one IP spraying many thousands of
// emails per window should cap it before the login handler (a rate limit
// at the edge) or switch the per-IP limit [Off].
//
// # Failure and time
//
// When the database cannot answer, Check and RecordFailure return an error
// wrapping [ErrUnavailable] and a denying decision ([LimitUnavailable]);
// [Policy.FailOpen] makes that decision allow instead. All times come from
// [Config.Now] and are written as UTC milliseconds, passed as parameters
// (never now() in SQL), so neither the process's TZ nor the session's
// TimeZone matters.
package lockout
