package lockout

import (
	"cmp"
	"fmt"
	"time"
)

// Off switches off a per-email or per-IP limit when set as
// [Policy.EmailLimit] or [Policy.IPLimit].
const Off = -1

// Policy holds the lockout rules. The zero value means the documented
// defaults; a negative duration or count other than [Off] is invalid.
type Policy struct {
	// MaxFailures is the number of failures for one (email, ip) pair that
	// locks the pair, and the length of each further run of failures that
	// locks it again for longer. Default 5.
	MaxFailures int
	// Window is how long a pair stays quiet before its counter starts over,
	// measured from its lastAttemptAt, or from the end of its lock when that
	// is later (so a lock as long as the window does not wipe the history
	// that makes the next lock longer). Failures count towards the per-email
	// and per-IP limits while their lastAttemptAt is within the window.
	// Default 15 minutes.
	Window time.Duration
	// LockDuration is the length of the first lock of a pair; each further
	// run of MaxFailures failures doubles it. Default 15 minutes.
	LockDuration time.Duration
	// MaxLockDuration caps the growing lock. Default 24 hours.
	MaxLockDuration time.Duration
	// ExtendWhileLocked makes each failure recorded while a pair is locked
	// push the lock's end to at least now plus the current lock length.
	// Default false: failures while locked are counted (they make the next
	// lock longer) but do not move the current lock.
	ExtendWhileLocked bool
	// EmailLimit is the number of failures for one email over all IPs within
	// the window that denies further attempts on the email from every IP.
	// Each (email, ip) row contributes at most MaxFailures, and it must be
	// above MaxFailures, so a single IP can never trip it alone. The denial is not stored and never grows: it
	// ends once enough failures age out of the window (at most Window after
	// the last one); see the package documentation for the trade-off.
	// Default 20, or MaxFailures+1 when that is more; [Off] switches it
	// off.
	EmailLimit int
	// IPLimit is the number of failures from one IP (or IPv6 prefix) over all
	// emails within the window that denies further attempts from it, each
	// row contributing at most MaxFailures, ending as EmailLimit's does. It
	// must be above MaxFailures, so that one user mistyping a password does
	// not deny everyone behind a shared address. Default 50, or
	// MaxFailures+1 when that is more; [Off] switches it off.
	IPLimit int
	// IPv6Prefix is the prefix length IPv6 clients are grouped by: one host
	// usually holds a whole /64. Default 64; between 1 and 128.
	IPv6Prefix int
	// FailOpen makes Check and RecordFailure allow the attempt when the
	// database cannot answer. Default false: they deny it (fail closed).
	FailOpen bool
}

// Defaults of [Policy].
const (
	DefaultMaxFailures     = 5
	DefaultWindow          = 15 * time.Minute
	DefaultLockDuration    = 15 * time.Minute
	DefaultMaxLockDuration = 24 * time.Hour
	DefaultEmailLimit      = 20
	DefaultIPLimit         = 50
	DefaultIPv6Prefix      = 64
)

// withDefaults returns p with zero fields set to their defaults, or an
// error naming the first invalid field.
func (p Policy) withDefaults() (Policy, error) {
	p.MaxFailures = cmp.Or(p.MaxFailures, DefaultMaxFailures)
	p.Window = cmp.Or(p.Window, DefaultWindow)
	p.LockDuration = cmp.Or(p.LockDuration, DefaultLockDuration)
	p.MaxLockDuration = cmp.Or(p.MaxLockDuration, DefaultMaxLockDuration)
	// The limits must exceed MaxFailures (see EmailLimit); their defaults
	// rise with a larger MaxFailures.
	p.EmailLimit = cmp.Or(p.EmailLimit, max(DefaultEmailLimit, p.MaxFailures+1))
	p.IPLimit = cmp.Or(p.IPLimit, max(DefaultIPLimit, p.MaxFailures+1))
	p.IPv6Prefix = cmp.Or(p.IPv6Prefix, DefaultIPv6Prefix)
	switch {
	case p.MaxFailures < 1:
		return p, fmt.Errorf("lockout: Policy.MaxFailures is %d; use a positive count or 0 for the default", p.MaxFailures)
	case p.Window < time.Millisecond:
		return p, fmt.Errorf("lockout: Policy.Window is %v; use at least 1ms or 0 for the default", p.Window)
	case p.LockDuration < time.Millisecond:
		return p, fmt.Errorf("lockout: Policy.LockDuration is %v; use at least 1ms or 0 for the default", p.LockDuration)
	case p.MaxLockDuration < p.LockDuration:
		return p, fmt.Errorf("lockout: Policy.MaxLockDuration %v is shorter than LockDuration %v", p.MaxLockDuration, p.LockDuration)
	case p.EmailLimit < 1 && p.EmailLimit != Off:
		return p, fmt.Errorf("lockout: Policy.EmailLimit is %d; use a positive count, 0 for the default or Off", p.EmailLimit)
	case p.EmailLimit != Off && p.EmailLimit <= p.MaxFailures:
		return p, fmt.Errorf("lockout: Policy.EmailLimit %d is not above MaxFailures %d: one IP alone would deny the email from every IP", p.EmailLimit, p.MaxFailures)
	case p.IPLimit < 1 && p.IPLimit != Off:
		return p, fmt.Errorf("lockout: Policy.IPLimit is %d; use a positive count, 0 for the default or Off", p.IPLimit)
	case p.IPLimit != Off && p.IPLimit <= p.MaxFailures:
		return p, fmt.Errorf("lockout: Policy.IPLimit %d is not above MaxFailures %d: one user's failures alone would deny the IP to everyone behind it", p.IPLimit, p.MaxFailures)
	case p.IPv6Prefix < 1 || p.IPv6Prefix > 128:
		return p, fmt.Errorf("lockout: Policy.IPv6Prefix is %d; use 1 to 128 or 0 for the default", p.IPv6Prefix)
	}
	return p, nil
}
