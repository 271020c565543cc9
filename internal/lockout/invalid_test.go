package lockout_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
)

// TestInvalidEmailDecision: a refused email is denied with LimitInvalid
// (not the "allowed" LimitNone), reported to OnDecision, also under
// FailOpen, and writes nothing.
func TestInvalidEmailDecision(t *testing.T) {
	t.Parallel()
	for _, failOpen := range []bool{false, true} {
		type call struct {
			op lockout.Op
			d  lockout.Decision
		}
		var mu sync.Mutex
		var calls []call
		s, db, _ := newService(t, lockout.Config{
			Policy: lockout.Policy{FailOpen: failOpen},
			OnDecision: func(_ context.Context, op lockout.Op, d lockout.Decision) {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, call{op, d})
			},
		})
		ctx := context.Background()
		for _, email := range []string{"", "an\u200dn@example.org", "\u24d0nn@example.org"} {
			calls = nil
			d, err := s.Check(ctx, email, "192.0.2.1")
			require.ErrorIs(t, err, lockout.ErrInvalidEmail)
			want := lockout.Decision{Limit: lockout.LimitInvalid}
			assert.Equal(t, want, d, "check %+q", email)
			f, err := s.RecordFailure(ctx, email, "192.0.2.1")
			require.ErrorIs(t, err, lockout.ErrInvalidEmail)
			assert.Equal(t, want, f, "record failure %+q", email)
			assert.Equal(t, []call{{lockout.OpCheck, want}, {lockout.OpFailure, want}}, calls, "%+q", email)
		}
		assert.Empty(t, rows(t, db), "nothing written")
	}
}
