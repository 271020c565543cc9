package lockout

import "errors"

// ErrUnavailable is wrapped by the errors of calls the database could not
// answer. Check and RecordFailure still return a [Decision] then: denying
// by default, allowing under [Policy.FailOpen].
var ErrUnavailable = errors.New("lockout: database unavailable")

// ErrInvalidEmail is matched (with errors.Is) by every [*EmailError].
var ErrInvalidEmail = errors.New("lockout: invalid email")

// ErrInvalidIP is returned by the operator calls given an IP that does not
// parse. Login calls never return it: an unparsable IP counts as unknown.
var ErrInvalidIP = errors.New("lockout: invalid IP address")

// EmailError reports an email rejected by [NormalizeEmail]; nothing was
// written. It does not repeat the address, which may be sensitive.
type EmailError struct {
	// Reason says what is wrong, e.g. "empty" or "longer than 320 bytes".
	Reason string
}

func (e *EmailError) Error() string { return "lockout: invalid email: " + e.Reason }

// Is reports whether target is [ErrInvalidEmail].
func (e *EmailError) Is(target error) bool { return target == ErrInvalidEmail }
