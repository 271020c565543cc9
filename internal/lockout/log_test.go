package lockout_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
)

// Unlock records name the normalised email and IP, as the lock records
// do, whatever form the operator typed them in.
func TestUnlockLogsNormalisedValues(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	s, _, _ := newService(t, lockout.Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	ctx := context.Background()
	_, err := s.RecordFailure(ctx, "ann@example.com", "192.0.2.1")
	require.NoError(t, err)

	n, err := s.UnlockPair(ctx, "  Ann@Example.COM ", "::ffff:192.0.2.1")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	assert.Contains(t, buf.String(), `msg="lockout: unlocked" email=ann@example.com ip=192.0.2.1 rows=1`)
	assert.NotContains(t, buf.String(), "Ann@Example.COM")
	assert.NotContains(t, buf.String(), "::ffff:")
}
