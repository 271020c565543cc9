package lockout

import "time"

// Limit names the rule behind a [Decision].
type Limit string

// Limits, in the order a denial reports them when several apply (the one
// lasting longest wins).
const (
	LimitNone        Limit = ""            // allowed
	LimitPair        Limit = "email_ip"    // too many failures for this (email, ip)
	LimitEmail       Limit = "email"       // too many failures for this email over all IPs
	LimitIP          Limit = "ip"          // too many failures from this IP over all emails
	LimitUnavailable Limit = "unavailable" // the database could not answer (fail closed)
	LimitInvalid     Limit = "invalid"     // the email is refused by [NormalizeEmail]; nothing was read or written
)

// Decision says whether a login attempt may proceed.
type Decision struct {
	// Allowed is true when the attempt may proceed (the password may be checked).
	Allowed bool
	// Limit is the rule that denies the attempt, [LimitNone] when allowed.
	Limit Limit
	// Until is when the denial ends; zero when allowed or unknown.
	Until time.Time
	// RetryAfter is Until minus now, rounded up to the second; zero when allowed.
	RetryAfter time.Duration
	// Failures is the (email, ip) pair's count after [Service.RecordFailure];
	// zero from [Service.Check].
	Failures int
	// LockedNow is true when this call of [Service.RecordFailure] set the
	// pair's lock (or moved it, under [Policy.ExtendWhileLocked]). It is
	// read from the lock's end, so a failure in the same millisecond as the
	// one that set the lock, which leaves the lock where it is, may report
	// it too (under ExtendWhileLocked, or at the MaxLockDuration cap).
	LockedNow bool
	// Admitted, from [Service.RecordFailure], says whether the attempt this
	// call counted may still have its password verified, for the flow that
	// counts an attempt before verifying it (see the package
	// documentation). Allowed is the decision for the next attempt; the
	// attempt that sets the pair's lock is the MaxFailures-th of its run
	// and was itself allowed, so Admitted is also true for it, unless
	// another limit denies longer. Under [Policy.ExtendWhileLocked], whose
	// failures move a standing lock, a concurrent burst past the lock may
	// get one attempt more per MaxFailures admitted. False from
	// [Service.Check]; under [Policy.FailOpen] an unavailable database
	// admits the attempt.
	Admitted bool
}

// Op names the call a [Decision] comes from, for [Config.OnDecision].
type Op string

// Ops reported to [Config.OnDecision].
const (
	OpCheck   Op = "check"
	OpFailure Op = "failure"
)

// decide builds the decision from the ends of the three limits at now; a
// zero time means the limit does not deny.
func decide(now, pair, email, ip time.Time) Decision {
	d := Decision{Allowed: true}
	for _, c := range []struct {
		until time.Time
		limit Limit
	}{{pair, LimitPair}, {email, LimitEmail}, {ip, LimitIP}} {
		if c.until.After(now) && c.until.After(d.Until) {
			d.Allowed, d.Limit, d.Until = false, c.limit, c.until
		}
	}
	if !d.Allowed {
		d.RetryAfter = d.Until.Sub(now)
		if r := d.RetryAfter % time.Second; r != 0 {
			d.RetryAfter += time.Second - r
		}
	}
	return d
}
