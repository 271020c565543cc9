package lockout

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/klozd/api/ent"
	"github.com/klozd/api/ent/authattempt"
	"github.com/klozd/api/ent/schema"
	"github.com/klozd/api/internal/database"
)

// Config configures a [Service]. The zero value is usable: default policy,
// wall clock, slog.Default, no hook.
type Config struct {
	// Policy holds the rules; its zero value means the defaults.
	Policy Policy
	// Now is the clock. Default time.Now. Times are written as UTC
	// milliseconds whatever its location.
	Now func() time.Time
	// Logger receives a record at each lock and unlock. Default slog.Default().
	Logger *slog.Logger
	// OnDecision, when set, is called with each decision [Service.Check] and
	// [Service.RecordFailure] return, e.g. to feed metrics. It runs on the
	// caller's goroutine and must be quick and safe for concurrent use.
	OnDecision func(ctx context.Context, op Op, d Decision)
	// PurgeBatch is the number of rows [Service.Purge] deletes per
	// statement. Default 1000.
	PurgeBatch int
	// OnPurge, when set, is called by [Service.Purge] after each batch that
	// deleted rows, with the running total, e.g. to show progress.
	OnPurge func(deleted int64)
	// Timeout bounds each call whose context has no deadline (a call
	// whose context has one keeps it). Every call returns by its deadline
	// plus database.DeadlineSlack, whatever the network or the server
	// does, on a pool opened by database.OpenConfig. Default 5s.
	Timeout time.Duration
}

// Service counts failed logins in the auth_attempts table and decides
// whether an attempt may proceed. It is safe for concurrent use, also by
// several processes on the same database.
type Service struct {
	db      *sql.DB
	ent     *ent.Client
	policy  Policy
	now     func() time.Time
	log     *slog.Logger
	hook    func(context.Context, Op, Decision)
	batch   int
	onPurge func(deleted int64)
	timeout time.Duration
	q       queries
	// The long statements of the hot path, prepared on first use unless
	// the pool is pooler-safe.
	stmts *database.Statements
}

// New returns a service over db, a pool on a database migrated with the
// auth_attempts table. It returns an error naming the field when the
// policy is invalid.
func New(db *sql.DB, cfg Config) (*Service, error) {
	p, err := cfg.Policy.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("lockout: Config.Timeout is %s; use a positive duration or 0 for the default", cfg.Timeout)
	}
	if cfg.PurgeBatch < 0 {
		return nil, fmt.Errorf("lockout: Config.PurgeBatch is %d; use a positive count or 0 for the default", cfg.PurgeBatch)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	q := buildQueries(p)
	return &Service{
		stmts:   database.NewStatements(db),
		db:      db,
		ent:     database.NewClient(db),
		policy:  p,
		now:     now,
		log:     cmp.Or(cfg.Logger, slog.Default()),
		hook:    cfg.OnDecision,
		batch:   cmp.Or(cfg.PurgeBatch, 1000),
		onPurge: cfg.OnPurge,
		timeout: cmp.Or(cfg.Timeout, DefaultTimeout),
		q:       q,
	}, nil
}

// Close releases the service's prepared statements. It does not close the
// *sql.DB, which the caller owns; a service used after Close prepares
// again.
func (s *Service) Close() error {
	if err := s.stmts.Close(); err != nil {
		return fmt.Errorf("lockout: close statements: %w", err)
	}
	return nil
}

// DefaultTimeout is [Config.Timeout]'s default.
const DefaultTimeout = 5 * time.Second

// Policy returns the policy in force, defaults filled in.
func (s *Service) Policy() Policy { return s.policy }

func (s *Service) clock() (now, cut time.Time) {
	now = schema.UTCMillis(s.now())
	return now, now.Add(-s.policy.Window)
}

// Check reports whether a login attempt for email from ip may proceed. It
// reads only (one query) and never depends on whether the account exists.
// ip may be empty or unparsable: the attempt then counts as from an unknown
// client, checked against the email's limits only.
//
// When the database cannot answer, Check returns an error wrapping
// [ErrUnavailable] together with a usable decision: denying with
// [LimitUnavailable] by default, allowing under [Policy.FailOpen]. Act on
// the decision; log the error. An invalid email returns an [*EmailError]
// and a decision denying with [LimitInvalid], reported to
// [Config.OnDecision] like any other.
func (s *Service) Check(ctx context.Context, email, ip string) (Decision, error) {
	ctx, cancel := database.Bound(ctx, s.timeout)
	defer cancel()
	e, err := NormalizeEmail(email)
	if err != nil {
		return s.invalid(ctx, OpCheck, "check", err)
	}
	now, cut := s.clock()
	addr := s.normalizeIP(ip)
	var pair, byEmail, byIP sql.NullTime
	if addr == nil {
		args := [...]any{e, now, cut}
		err = s.stmts.Scan(ctx, s.q.checkNullIP, args[:s.q.checkNullArgs], &pair, &byEmail, &byIP)
	} else {
		args := [...]any{e, *addr, now, cut}
		err = s.stmts.Scan(ctx, s.q.check, args[:s.q.checkArgs], &pair, &byEmail, &byIP)
	}
	if err != nil {
		return s.unavailable(ctx, OpCheck, "check", err)
	}
	d := decide(now, utc(pair), s.aggEnd(byEmail), s.aggEnd(byIP))
	s.report(ctx, OpCheck, d)
	return d, nil
}

// RecordFailure counts a failed login for email from ip and returns the
// decision for the next attempt, with the pair's count. It locks the pair
// when the count reaches a multiple of [Policy.MaxFailures] (see
// [Policy.LockDuration]). With a known ip it is one atomic statement; with
// an unknown ip it is a short transaction serialised per email by an
// advisory lock. No concurrent failure is lost either way.
//
// Errors are as for [Service.Check]; an invalid email writes nothing.
func (s *Service) RecordFailure(ctx context.Context, email, ip string) (Decision, error) {
	ctx, cancel := database.Bound(ctx, s.timeout)
	defer cancel()
	e, err := NormalizeEmail(email)
	if err != nil {
		return s.invalid(ctx, OpFailure, "record failure", err)
	}
	now, cut := s.clock()
	addr := s.normalizeIP(ip)
	var r failureRow
	if addr != nil {
		args := []any{schema.NewID(), e, *addr, now, cut}
		err = s.stmts.Scan(ctx, s.q.failure, args, r.dest()...)
		if serializationFailure(err) {
			err = s.failureReadCommitted(ctx, args, &r)
		}
	} else {
		err = s.failureNullIP(ctx, e, now, cut, &r)
	}
	if err != nil {
		return s.unavailable(ctx, OpFailure, "record failure", err)
	}
	d := decide(now, utc(r.lockedUntil), s.aggEnd(r.email), s.aggEnd(r.ip))
	d.Failures, d.LockedNow = r.failures, r.lockedNow
	d.Admitted = d.Allowed || s.setLock(r) && d.Limit == LimitPair
	if r.lockedNow {
		s.log.LogAttrs(ctx, slog.LevelWarn, "lockout: locked",
			slog.String("email", e), slog.String("ip", deref(addr)), slog.Int("failures", r.failures),
			slog.Time("until", d.Until), slog.Duration("for", utc(r.lockedUntil).Sub(now)))
	}
	s.report(ctx, OpFailure, d)
	return d, nil
}

// readCommitted is the isolation the lockout statements are written for.
// A role or database may default to a stronger one; there an upsert that
// meets a concurrent update fails with a serialization error instead of
// counting on the newest row, and a transaction's snapshot predates the
// advisory lock it then waits for.
var readCommitted = &sql.TxOptions{Isolation: sql.LevelReadCommitted}

// serializationFailure reports whether err is PostgreSQL's serialization
// failure (SQLSTATE 40001), which the known-IP upsert meets only when the
// session's default isolation is above READ COMMITTED.
func serializationFailure(err error) bool {
	return database.SQLState(err) == database.SerializationFailure
}

// exec runs one autocommitted write statement. Under a default isolation
// above READ COMMITTED it may meet a concurrent failure on the same row
// and fail with a serialization error; it then runs again in a READ
// COMMITTED transaction, where it waits for the row instead (the failed
// attempt changed nothing).
func (s *Service) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := s.db.ExecContext(ctx, query, args...)
	if !serializationFailure(err) {
		return res, err
	}
	err = s.readCommitted(ctx, func(tx *sql.Tx) error {
		res, err = tx.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// readCommitted runs f in a READ COMMITTED transaction and commits it
// when f succeeds.
func (s *Service) readCommitted(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, readCommitted)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// failureReadCommitted runs the known-IP upsert again in a READ COMMITTED
// transaction, where it waits for a concurrent update instead of failing.
// The failed attempt changed nothing, so nothing is counted twice.
func (s *Service) failureReadCommitted(ctx context.Context, args []any, r *failureRow) error {
	st, err := s.stmts.Get(ctx, s.q.failure)
	if err != nil {
		return err
	}
	return s.readCommitted(ctx, func(tx *sql.Tx) error {
		return st.In(ctx, tx).QueryRow(ctx, args...).Scan(r.dest()...)
	})
}

// failureNullIP records a failure without an IP. The unique index does not
// cover NULL, so the email's advisory lock serialises update-or-insert, in
// a READ COMMITTED transaction so that the update sees the row the lock's
// previous holder inserted.
func (s *Service) failureNullIP(ctx context.Context, email string, now, cut time.Time, r *failureRow) error {
	upd, err := s.stmts.Get(ctx, s.q.failNullUpd)
	if err != nil {
		return err
	}
	ins, err := s.stmts.Get(ctx, s.q.failNullIns)
	if err != nil {
		return err
	}
	return s.readCommitted(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q.lockEmail, email); err != nil {
			return err
		}
		err := upd.In(ctx, tx).QueryRow(ctx, email, now, cut).Scan(r.dest()...)
		if errors.Is(err, sql.ErrNoRows) {
			args := [...]any{schema.NewID(), email, now, cut}
			err = ins.In(ctx, tx).QueryRow(ctx, args[:s.q.failNullInsArgs]...).Scan(r.dest()...)
		}
		return err
	})
}

// setLock reports whether the failure of r set the pair's lock rather
// than met it: only then was the attempt it counted allowed. Under
// ExtendWhileLocked a failure that moves an active lock reports
// lockedNow too, so there only a failure at a multiple of MaxFailures
// counts as setting it (a concurrent burst past the lock may admit one
// attempt more per MaxFailures).
func (s *Service) setLock(r failureRow) bool {
	if !r.lockedNow {
		return false
	}
	return !s.policy.ExtendWhileLocked || r.failures%s.policy.MaxFailures == 0
}

type failureRow struct {
	failures    int
	lockedUntil sql.NullTime
	lockedNow   bool
	email, ip   sql.NullTime
}

func (r *failureRow) dest() []any {
	return []any{&r.failures, &r.lockedUntil, &r.lockedNow, &r.email, &r.ip}
}

// RecordSuccess resets the (email, ip) counter and lifts its lock after a
// successful login. It writes nothing when there is nothing to reset.
func (s *Service) RecordSuccess(ctx context.Context, email, ip string) error {
	ctx, cancel := database.Bound(ctx, s.timeout)
	defer cancel()
	_, err := s.reset(ctx, "record success", email, s.normalizeIP(ip))
	return err
}

// UnlockPair lifts the lock and resets the counter of one (email, ip) pair;
// an empty ip means the pair with an unknown IP. ip may also be a key as
// [Service.Status] shows it ("2001:db8:1:2::/64"). It returns the number of
// rows changed, or an error wrapping [ErrInvalidIP] when a non-empty ip
// does not name one key.
func (s *Service) UnlockPair(ctx context.Context, email, ip string) (int64, error) {
	ctx, cancel := database.Bound(ctx, s.timeout)
	defer cancel()
	var addr *string
	if strings.TrimSpace(ip) != "" {
		key, err := s.operatorIP("unlock", ip)
		if err != nil {
			return 0, err
		}
		addr = &key
	}
	n, err := s.reset(ctx, "unlock", email, addr)
	if err == nil && n > 0 {
		e, _ := NormalizeEmail(email) // reset succeeded, so it normalises
		s.log.LogAttrs(ctx, slog.LevelInfo, "lockout: unlocked",
			slog.String("email", e), slog.String("ip", deref(addr)), slog.Int64("rows", n))
	}
	return n, err
}

// reset clears the pair (email, addr); a nil addr is the unknown IP.
func (s *Service) reset(ctx context.Context, op, email string, addr *string) (int64, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return 0, fmt.Errorf("lockout: %s: %w", op, err)
	}
	now, _ := s.clock()
	var res sql.Result
	if addr != nil {
		res, err = s.exec(ctx, s.q.success, e, *addr, now)
	} else {
		res, err = s.exec(ctx, s.q.successNull, e, now)
	}
	return affected(op, res, err)
}

// UnlockEmail lifts the locks and resets the counters of email over all
// IPs, which also lifts its per-email limit. It returns the rows changed.
func (s *Service) UnlockEmail(ctx context.Context, email string) (int64, error) {
	ctx, cancel := database.Bound(ctx, s.timeout)
	defer cancel()
	e, err := NormalizeEmail(email)
	if err != nil {
		return 0, fmt.Errorf("lockout: unlock email: %w", err)
	}
	now, _ := s.clock()
	res, err := s.exec(ctx, s.q.unlockEmail, e, now)
	n, err := affected("unlock email", res, err)
	if err == nil && n > 0 {
		s.log.LogAttrs(ctx, slog.LevelInfo, "lockout: unlocked", slog.String("email", e), slog.Int64("rows", n))
	}
	return n, err
}

// UnlockIP lifts the locks and resets the counters of ip (its IPv6 prefix)
// over all emails, which also lifts its per-IP limit. ip may also be a key
// as [Service.Status] shows it ("2001:db8:1:2::/64"). It returns the rows
// changed, or an error wrapping [ErrInvalidIP] when ip does not name one
// key (an unparsable address, or a prefix wider or narrower than the
// policy's).
func (s *Service) UnlockIP(ctx context.Context, ip string) (int64, error) {
	ctx, cancel := database.Bound(ctx, s.timeout)
	defer cancel()
	addr, err := s.operatorIP("unlock ip", ip)
	if err != nil {
		return 0, err
	}
	now, _ := s.clock()
	res, err := s.exec(ctx, s.q.unlockIP, addr, now)
	n, err := affected("unlock ip", res, err)
	if err == nil && n > 0 {
		s.log.LogAttrs(ctx, slog.LevelInfo, "lockout: unlocked", slog.String("ip", addr), slog.Int64("rows", n))
	}
	return n, err
}

// Attempt is one (email, ip) row as [Service.Status] shows it.
type Attempt struct {
	Email         string
	IP            string // "" when unknown
	Failures      int
	LockedUntil   time.Time // zero when never locked; may be in the past
	LastAttemptAt time.Time
}

// Status returns the rows of email, newest failure first, for an admin view.
func (s *Service) Status(ctx context.Context, email string) ([]Attempt, error) {
	ctx, cancel := database.Bound(ctx, s.timeout)
	defer cancel()
	e, err := NormalizeEmail(email)
	if err != nil {
		return nil, fmt.Errorf("lockout: status: %w", err)
	}
	rows, err := s.ent.AuthAttempt.Query().
		Where(authattempt.Email(e)).
		Order(ent.Desc(authattempt.FieldLastAttemptAt)).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("lockout: status: %w: %w", ErrUnavailable, err)
	}
	out := make([]Attempt, len(rows))
	for i, r := range rows {
		out[i] = Attempt{Email: r.Email, Failures: r.FailuresCount, LastAttemptAt: r.LastAttemptAt.UTC()}
		if r.IP != nil {
			out[i].IP = *r.IP
		}
		if r.LockedUntil != nil {
			out[i].LockedUntil = r.LockedUntil.UTC()
		}
	}
	return out, nil
}

// unavailable returns the fail-closed (or fail-open) decision and the error
// for a database failure during op.
func (s *Service) unavailable(ctx context.Context, op Op, name string, cause error) (Decision, error) {
	d := Decision{Limit: LimitUnavailable}
	if s.policy.FailOpen {
		d = Decision{Allowed: true, Admitted: op == OpFailure}
	}
	s.report(ctx, op, d)
	return d, fmt.Errorf("lockout: %s: %w: %w", name, ErrUnavailable, cause)
}

// invalid returns the denying decision ([LimitInvalid]) and the error for
// an email [NormalizeEmail] refused during op. It denies under
// [Policy.FailOpen] too: the email is refused, not the database down.
func (s *Service) invalid(ctx context.Context, op Op, name string, cause error) (Decision, error) {
	d := Decision{Limit: LimitInvalid}
	s.report(ctx, op, d)
	return d, fmt.Errorf("lockout: %s: %w", name, cause)
}

func (s *Service) report(ctx context.Context, op Op, d Decision) {
	if s.hook != nil {
		s.hook(ctx, op, d)
	}
}

// aggEnd turns the lastAttemptAt an aggregate limit returns into the end of
// its denial.
func (s *Service) aggEnd(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC().Add(s.policy.Window)
}

func utc(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

func affected(op string, res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, fmt.Errorf("lockout: %s: %w: %w", op, ErrUnavailable, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("lockout: %s: %w", op, err)
	}
	return n, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
