package lockout_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
)

// countedFirst is the flow the package documentation recommends: Check,
// then RecordFailure before the password is verified, which is verified
// only when the failure's decision admits the attempt it counted; a right
// password then resets the pair. It reports whether the password was
// verified and whether it was right.
func countedFirst(t testing.TB, s *lockout.Service, email, ip string, right bool) (verified, ok bool) {
	t.Helper()
	ctx := context.Background()
	d, err := s.Check(ctx, email, ip)
	require.NoError(t, err)
	if !d.Allowed {
		return false, false
	}
	f, err := s.RecordFailure(ctx, email, ip)
	require.NoError(t, err)
	if !f.Admitted {
		return false, false
	}
	if right {
		require.NoError(t, s.RecordSuccess(ctx, email, ip))
	}
	return true, right
}

func TestCountedFirstFlowVerifiesMaxFailures(t *testing.T) {
	t.Parallel()
	for _, max := range []int{1, 3, 5} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			t.Parallel()
			s, _, c := newService(t, lockout.Config{Policy: lockout.Policy{MaxFailures: max}})
			const email, ip = "ann@example.org", "192.0.2.1"
			verified := 0
			for range 3 * max {
				if v, _ := countedFirst(t, s, email, ip, false); v {
					verified++
				}
			}
			assert.Equal(t, max, verified, "first run")
			// Once the first lock is over, the next run verifies as many.
			c.Add(s.Policy().LockDuration)
			verified = 0
			for range 3 * max {
				if v, _ := countedFirst(t, s, email, ip, false); v {
					verified++
				}
			}
			assert.Equal(t, max, verified, "second run")
			// Every attempt of a run may be the right password, the last too.
			c.Add(s.Policy().MaxLockDuration)
			for range max - 1 {
				v, _ := countedFirst(t, s, email, ip, false)
				require.True(t, v)
			}
			v, ok := countedFirst(t, s, email, ip, true)
			assert.True(t, v && ok, "the MaxFailures-th attempt logs in")
			// The success reset the pair: a fresh run.
			v, ok = countedFirst(t, s, email, ip, true)
			assert.True(t, v && ok)
		})
	}
}

// TestRecordFirstOnAllowedIsShort shows why the flow reads Admitted: the
// decision RecordFailure returns is for the next attempt, so proceeding
// on Allowed verifies one password fewer than MaxFailures, and none at
// all under MaxFailures 1.
func TestRecordFirstOnAllowedIsShort(t *testing.T) {
	t.Parallel()
	for _, max := range []int{1, 5} {
		s, _, _ := newService(t, lockout.Config{Policy: lockout.Policy{MaxFailures: max}})
		onAllowed, onAdmitted := 0, 0
		for range 2 * max {
			d, err := s.RecordFailure(context.Background(), "ann@example.org", "192.0.2.1")
			require.NoError(t, err)
			if d.Allowed {
				onAllowed++
			}
			if d.Admitted {
				onAdmitted++
			}
		}
		assert.Equal(t, max-1, onAllowed, "MaxFailures %d", max)
		assert.Equal(t, max, onAdmitted, "MaxFailures %d", max)
	}
}

func TestCountedFirstFlowUnderABurst(t *testing.T) {
	t.Parallel()
	s, _, _ := newService(t, lockout.Config{})
	var verified atomic.Int32
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			if v, _ := countedFirst(t, s, "ann@example.org", "192.0.2.1", false); v {
				verified.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(s.Policy().MaxFailures), verified.Load(), "exactly MaxFailures passwords verified")
}

func TestAdmittedIsFalseWhenAnotherLimitDenies(t *testing.T) {
	t.Parallel()
	// MaxFailures 2, EmailLimit 3: two failures from one IP and one from
	// another reach the email limit. The attempt that reaches it is not
	// admitted: under the counted-first flow the per-email and per-IP
	// limits verify one password fewer than their limit.
	s, _, _ := newService(t, lockout.Config{Policy: lockout.Policy{MaxFailures: 2, EmailLimit: 3, IPLimit: lockout.Off}})
	ctx := context.Background()
	for range 2 {
		_, err := s.RecordFailure(ctx, "ann@example.org", "192.0.2.1")
		require.NoError(t, err)
	}
	d, err := s.RecordFailure(ctx, "ann@example.org", "192.0.2.2")
	require.NoError(t, err)
	assert.Equal(t, lockout.LimitEmail, d.Limit)
	assert.False(t, d.Admitted, "a plain failure that meets the email limit")
}
