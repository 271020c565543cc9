package lockout_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/lockout"
)

// downDB returns a pool on a port nothing listens on.
func downDB(t *testing.T) *lockout.Service {
	t.Helper()
	return downService(t, lockout.Policy{})
}

func downService(t *testing.T, p lockout.Policy) *lockout.Service {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	db, err := database.Open(fmt.Sprintf("postgres://nobody:secret@127.0.0.1:%d/none?sslmode=disable&connect_timeout=2", port))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	s, err := lockout.New(db, lockout.Config{Policy: p, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return s
}

func TestDatabaseDownFailsClosed(t *testing.T) {
	t.Parallel()
	s := downDB(t)
	ctx := context.Background()
	for _, ip := range []string{"192.0.2.1", ""} {
		d, err := s.Check(ctx, ann, ip)
		assert.ErrorIs(t, err, lockout.ErrUnavailable)
		assert.ErrorContains(t, err, "lockout: check: ")
		assert.False(t, d.Allowed)
		assert.Equal(t, lockout.LimitUnavailable, d.Limit)

		d, err = s.RecordFailure(ctx, ann, ip)
		assert.ErrorIs(t, err, lockout.ErrUnavailable)
		assert.ErrorContains(t, err, "lockout: record failure: ")
		assert.False(t, d.Allowed)
		assert.Equal(t, lockout.LimitUnavailable, d.Limit)

		assert.ErrorIs(t, s.RecordSuccess(ctx, ann, ip), lockout.ErrUnavailable)
	}
	_, err := s.Purge(ctx)
	assert.ErrorIs(t, err, lockout.ErrUnavailable)
	_, err = s.Status(ctx, ann)
	assert.ErrorIs(t, err, lockout.ErrUnavailable)
}

func TestDatabaseDownFailsOpenWhenConfigured(t *testing.T) {
	t.Parallel()
	s := downService(t, lockout.Policy{FailOpen: true})
	ctx := context.Background()
	d, err := s.Check(ctx, ann, "192.0.2.1")
	assert.ErrorIs(t, err, lockout.ErrUnavailable, "the error is still returned, to be logged")
	assert.True(t, d.Allowed)
	assert.Equal(t, lockout.LimitNone, d.Limit)
	d, err = s.RecordFailure(ctx, ann, "")
	assert.ErrorIs(t, err, lockout.ErrUnavailable)
	assert.True(t, d.Allowed)
}
