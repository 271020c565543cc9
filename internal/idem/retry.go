package idem

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"time"

	"github.com/klozd/api/internal/database"
)

// Bounds of the backoff between attempts of [Store.Complete],
// [Store.Release] and [Store.Renew] in the middleware: it starts at retryBackoffMin and
// doubles up to retryBackoffMax.
const (
	retryBackoffMin = 25 * time.Millisecond
	retryBackoffMax = 500 * time.Millisecond
)

// transient reports whether err is a failure after which a fenced
// statement of the store is worth running again: the connection was lost
// or refused, the server is shutting down or starting or read-only (a
// standby), or the statement lost a serialization, deadlock or lock race or
// hit the statement timeout.
// The statements retried (Complete, Release and Renew) are fenced by the
// claim's id and idempotent, so running one twice is safe even when the first run
// committed and only its reply was lost. A cancelled or expired context is
// not transient: the caller gave up.
func transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, database.ErrOutcomeUnknown):
		return true
	}
	switch code := database.SQLState(err); code {
	case database.AdminShutdown, database.CrashShutdown, database.CannotConnectNow,
		database.SerializationFailure, database.DeadlockDetected, database.LockNotAvailable,
		database.QueryCanceled,       // statement_timeout
		database.ReadOnlyTransaction: // a standby: the pool reconnects elsewhere
		return true
	case "":
	default:
		return database.IsConnectionClass(code)
	}
	_, isNet := errors.AsType[net.Error](err)
	return isNet
}

// retry runs op until it succeeds, fails with an error that is not
// [transient], or the next attempt would start after until or after ctx
// ends. Between attempts it waits retryBackoffMin, doubling up to
// retryBackoffMax, after calling onRetry with the transient error. It
// returns whether any attempt failed with a transient error, and op's last
// error.
func retry(ctx context.Context, until time.Time, op func(context.Context) error, onRetry func(error)) (sawTransient bool, err error) {
	backoff := retryBackoffMin
	for {
		err = op(ctx)
		if !transient(err) {
			return sawTransient, err
		}
		sawTransient = true
		if ctx.Err() != nil || time.Now().Add(backoff).After(until) {
			// A cancelled statement may look like a timeout (57014): the
			// caller gave up, so nothing is retried or logged.
			return sawTransient, err
		}
		onRetry(err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return sawTransient, err
		case <-t.C:
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}
