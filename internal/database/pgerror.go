package database

import "errors"

// SQLSTATE codes the services act on (PostgreSQL, Appendix A).
const (
	// ReadOnlyTransaction: a write reached a read-only session, such as a
	// standby or a server with default_transaction_read_only. Nothing ran.
	ReadOnlyTransaction = "25006"
	// SerializationFailure: a transaction above READ COMMITTED met a
	// concurrent update. Nothing it did is kept.
	SerializationFailure = "40001"
	// DeadlockDetected: the statement was chosen to break a deadlock.
	DeadlockDetected = "40P01"
	// LockNotAvailable: lock_timeout expired while waiting for a lock.
	LockNotAvailable = "55P03"
	// QueryCanceled: statement_timeout expired, or the statement was
	// cancelled (a cancelled context does this too).
	QueryCanceled = "57014"
	// AdminShutdown: the server is shutting down, or the backend was
	// terminated (pg_terminate_backend).
	AdminShutdown = "57P01"
	// CrashShutdown: another backend crashed and the server restarts.
	CrashShutdown = "57P02"
	// CannotConnectNow: the server is starting up or in recovery.
	CannotConnectNow = "57P03"
)

// SQLState returns the SQLSTATE of the PostgreSQL error in err's chain, or
// "" when there is none. It works with every driver whose errors have a
// SQLState method: lib/pq's *pq.Error and pgx's *pgconn.PgError.
func SQLState(err error) string {
	var e interface{ SQLState() string }
	if errors.As(err, &e) {
		return e.SQLState()
	}
	return ""
}

// IsConnectionClass reports whether code is of class 08, connection
// exception.
func IsConnectionClass(code string) bool { return len(code) == 5 && code[:2] == "08" }
