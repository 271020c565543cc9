package idem

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
)

func TestTransient(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("idem: complete key abc on %q: %w", "r", err) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"bad conn", driver.ErrBadConn, true},
		{"EOF", wrap(io.EOF), true},
		{"unexpected EOF", wrap(io.ErrUnexpectedEOF), true},
		{"net error", wrap(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{"connection failure 08006", wrap(&pq.Error{Code: "08006"}), true},
		{"cannot connect 08001", &pq.Error{Code: "08001"}, true},
		{"admin shutdown", wrap(&pq.Error{Code: "57P01"}), true},
		{"crash shutdown", &pq.Error{Code: "57P02"}, true},
		{"starting up", &pq.Error{Code: "57P03"}, true},
		{"serialization", &pq.Error{Code: "40001"}, true},
		{"deadlock", &pq.Error{Code: "40P01"}, true},
		{"lock timeout", &pq.Error{Code: "55P03"}, true},
		{"statement timeout", wrap(&pq.Error{Code: "57014"}), true},
		{"unique violation", &pq.Error{Code: "23505"}, false},
		{"read-only (a standby)", wrap(&pq.Error{Code: "25006"}), true},
		// pgx's errors are classified by the same SQLSTATEs.
		{"pgx admin shutdown", wrap(&pgconn.PgError{Code: "57P01"}), true},
		{"pgx lock timeout", &pgconn.PgError{Code: "55P03"}, true},
		{"pgx serialization", &pgconn.PgError{Code: "40001"}, true},
		{"pgx connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"pgx unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"syntax error", &pq.Error{Code: "42601"}, false},
		{"claim lost", wrap(ErrClaimLost), false},
		{"canceled", wrap(context.Canceled), false},
		{"deadline", wrap(context.DeadlineExceeded), false},
		{"other", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, transient(tc.err))
		})
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	far := time.Now().Add(time.Minute)
	var retried []error

	n := 0
	saw, err := retry(ctx, far, func(context.Context) error {
		if n++; n < 3 {
			return driver.ErrBadConn
		}
		return nil
	}, func(err error) { retried = append(retried, err) })
	assert.NoError(t, err)
	assert.True(t, saw)
	assert.Equal(t, 3, n, "retried through two transient failures")
	assert.Len(t, retried, 2)

	n = 0
	saw, err = retry(ctx, far, func(context.Context) error { n++; return ErrClaimLost }, func(error) {})
	assert.ErrorIs(t, err, ErrClaimLost)
	assert.False(t, saw)
	assert.Equal(t, 1, n, "a permanent error is not retried")

	n = 0
	saw, err = retry(ctx, time.Now(), func(context.Context) error { n++; return io.EOF }, func(error) {})
	assert.ErrorIs(t, err, io.EOF)
	assert.True(t, saw)
	assert.Equal(t, 1, n, "no attempt starts after the deadline")
}

// A statement cancelled because its caller gave up may fail like a
// statement timeout (57014); once the context is done, retry neither
// retries nor reports it.
func TestRetryStopsWhenTheCallerGaveUp(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	attempts, reported := 0, 0
	saw, err := retry(ctx, time.Now().Add(time.Minute), func(context.Context) error {
		attempts++
		return &pq.Error{Code: "57014"}
	}, func(error) { reported++ })
	assert.True(t, saw)
	assert.Error(t, err)
	assert.Equal(t, 1, attempts)
	assert.Zero(t, reported, "nothing is logged as a transient failure")
}
