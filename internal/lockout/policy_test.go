package lockout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
)

// step is one action in a policy scenario, and what Check must answer after it.
type step struct {
	op        string // "fail", "success", "advance", "unlock-pair", "unlock-email", "unlock-ip", "check"
	email, ip string
	times     int           // for "fail": how many failures
	by        time.Duration // for "advance"
	// Expected Check for (email, ip) after the step (for "check" only).
	allowed bool
	limit   lockout.Limit
	retry   time.Duration
}

func fail(n int, email, ip string) step { return step{op: "fail", email: email, ip: ip, times: n} }
func advance(d time.Duration) step      { return step{op: "advance", by: d} }
func success(email, ip string) step     { return step{op: "success", email: email, ip: ip} }
func allowed(email, ip string) step {
	return step{op: "check", email: email, ip: ip, allowed: true}
}
func denied(email, ip string, l lockout.Limit, retry time.Duration) step {
	return step{op: "check", email: email, ip: ip, limit: l, retry: retry}
}

const (
	ann = "ann@example.org"
	bob = "bob@example.org"
	cat = "cat@example.org"
	ip1 = "192.0.2.1"
	ip2 = "192.0.2.2"
	ip3 = "192.0.2.3"
)

func TestPolicy(t *testing.T) {
	t.Parallel()
	noAgg := lockout.Policy{EmailLimit: lockout.Off, IPLimit: lockout.Off}
	type policyCase struct {
		name   string
		policy lockout.Policy
		steps  []step
	}
	cases := []policyCase{
		{"below the threshold", lockout.Policy{}, []step{
			fail(4, ann, ip1), allowed(ann, ip1),
		}},
		{"threshold locks the pair only", lockout.Policy{}, []step{
			fail(5, ann, ip1),
			denied(ann, ip1, lockout.LimitPair, 15*time.Minute),
			allowed(ann, ip2), allowed(bob, ip1), allowed(ann, ""),
		}},
		{"email is normalised", lockout.Policy{}, []step{
			fail(5, " Ann@Example.ORG\t", ip1),
			denied(ann, ip1, lockout.LimitPair, 15*time.Minute),
		}},
		{"lock ends", lockout.Policy{}, []step{
			fail(5, ann, ip1), advance(15*time.Minute - time.Second),
			denied(ann, ip1, lockout.LimitPair, time.Second),
			advance(time.Second), allowed(ann, ip1),
		}},
		{"window reset from lastAttemptAt", lockout.Policy{}, []step{
			fail(4, ann, ip1), advance(15 * time.Minute), fail(4, ann, ip1), allowed(ann, ip1),
		}},
		{"no reset inside the window", lockout.Policy{}, []step{
			fail(4, ann, ip1), advance(15*time.Minute - time.Millisecond), fail(1, ann, ip1),
			denied(ann, ip1, lockout.LimitPair, 15*time.Minute),
		}},
		{"progressive lock doubles up to the cap", lockout.Policy{MaxLockDuration: 50 * time.Minute}, []step{
			fail(5, ann, ip1), denied(ann, ip1, lockout.LimitPair, 15*time.Minute),
			advance(15 * time.Minute), allowed(ann, ip1),
			fail(4, ann, ip1), allowed(ann, ip1),
			fail(1, ann, ip1), denied(ann, ip1, lockout.LimitPair, 30*time.Minute),
			advance(30 * time.Minute),
			fail(5, ann, ip1), denied(ann, ip1, lockout.LimitPair, 50*time.Minute),
			advance(50 * time.Minute),
			fail(5, ann, ip1), denied(ann, ip1, lockout.LimitPair, 50*time.Minute),
		}},
		{"quiet for a window after the lock starts over", lockout.Policy{}, []step{
			fail(5, ann, ip1), advance(30 * time.Minute),
			fail(5, ann, ip1), denied(ann, ip1, lockout.LimitPair, 15*time.Minute),
		}},
		{"failures while locked do not extend it", lockout.Policy{}, []step{
			fail(5, ann, ip1), advance(5 * time.Minute), fail(3, ann, ip1),
			denied(ann, ip1, lockout.LimitPair, 10*time.Minute),
			// ...but they count: 8 so far, the next lock comes at 10, for 30 min.
			advance(10 * time.Minute), fail(1, ann, ip1), allowed(ann, ip1),
			fail(1, ann, ip1), denied(ann, ip1, lockout.LimitPair, 30*time.Minute),
		}},
		{"failures while locked extend it when the policy says so", lockout.Policy{ExtendWhileLocked: true}, []step{
			fail(5, ann, ip1), advance(5 * time.Minute), fail(1, ann, ip1),
			denied(ann, ip1, lockout.LimitPair, 15*time.Minute),
		}},
		{"success resets the pair", lockout.Policy{}, []step{
			fail(4, ann, ip1), success(ann, ip1), fail(4, ann, ip1), allowed(ann, ip1),
			fail(1, ann, ip1), denied(ann, ip1, lockout.LimitPair, 15*time.Minute),
		}},
		{"success lifts the pair's lock and level", lockout.Policy{}, []step{
			fail(5, ann, ip1), success(ann, ip1), allowed(ann, ip1),
			fail(5, ann, ip1), denied(ann, ip1, lockout.LimitPair, 15*time.Minute),
		}},
		{"unknown IP is its own pair", lockout.Policy{}, []step{
			fail(3, ann, ""), fail(2, ann, "not an ip"),
			denied(ann, "", lockout.LimitPair, 15*time.Minute),
			denied(ann, "999.1.1.1", lockout.LimitPair, 15*time.Minute),
			allowed(ann, ip1),
		}},
		{"unlock pair", lockout.Policy{}, []step{
			fail(5, ann, ip1), fail(5, ann, ip2), {op: "unlock-pair", email: ann, ip: ip1},
			allowed(ann, ip1), denied(ann, ip2, lockout.LimitPair, 15*time.Minute),
		}},
		{"unlock email", lockout.Policy{}, []step{
			fail(5, ann, ip1), fail(5, ann, ""), fail(5, bob, ip1), {op: "unlock-email", email: ann},
			allowed(ann, ip1), allowed(ann, ""), denied(bob, ip1, lockout.LimitPair, 15*time.Minute),
		}},
		{"unlock ip", lockout.Policy{}, []step{
			fail(5, ann, ip1), fail(5, bob, ip1), fail(5, ann, ip2), {op: "unlock-ip", ip: ip1},
			allowed(ann, ip1), allowed(bob, ip1), denied(ann, ip2, lockout.LimitPair, 15*time.Minute),
		}},
		{"per-email limit over IPs", lockout.Policy{EmailLimit: 6}, []step{
			fail(3, ann, ip1), fail(2, ann, ip2), allowed(ann, ip3),
			fail(1, ann, ""),
			denied(ann, ip3, lockout.LimitEmail, 15*time.Minute),
			denied(ann, ip1, lockout.LimitEmail, 15*time.Minute),
			allowed(bob, ip3),
		}},
		{"per-email denial ends when failures age out", lockout.Policy{EmailLimit: 6}, []step{
			fail(3, ann, ip1), advance(5 * time.Minute), fail(3, ann, ip2),
			denied(ann, ip3, lockout.LimitEmail, 10*time.Minute),
			advance(10 * time.Minute), allowed(ann, ip3),
		}},
		{"one IP alone cannot trip the per-email limit", lockout.Policy{EmailLimit: 6}, []step{
			fail(12, ann, ip1), allowed(ann, ip2),
		}},
		{"per-email limit off", lockout.Policy{EmailLimit: lockout.Off, IPLimit: lockout.Off}, []step{
			fail(4, ann, ip1), fail(4, ann, ip2), fail(4, ann, ""), fail(4, ann, "198.51.100.7"),
			fail(4, ann, "198.51.100.8"), fail(4, ann, "198.51.100.9"), allowed(ann, ip3),
		}},
		{"per-IP limit over emails", lockout.Policy{IPLimit: 7}, []step{
			fail(4, ann, ip1), fail(2, bob, ip1), allowed(cat, ip1),
			fail(1, cat, ip1),
			denied("dan@example.org", ip1, lockout.LimitIP, 15*time.Minute),
			allowed("dan@example.org", ip2),
			{op: "unlock-ip", ip: ip1}, allowed("dan@example.org", ip1),
		}},
		{"per-IP limit off", noAgg, []step{
			fail(4, ann, ip1), fail(4, bob, ip1), fail(4, cat, ip1), allowed("dan@example.org", ip1),
		}},
		{"the longest denial is reported", lockout.Policy{EmailLimit: 6}, []step{
			fail(5, ann, ip1), advance(time.Minute), fail(3, ann, ip2), fail(3, ann, ip3),
			denied(ann, ip1, lockout.LimitEmail, 15*time.Minute),
			advance(14*time.Minute + time.Second), denied(ann, ip1, lockout.LimitEmail, time.Minute-time.Second),
		}},
		{"MaxFailures 1 locks at the first failure", lockout.Policy{MaxFailures: 1, LockDuration: time.Minute}, []step{
			fail(1, ann, ip1), denied(ann, ip1, lockout.LimitPair, time.Minute),
			fail(1, ann, ""), denied(ann, "", lockout.LimitPair, time.Minute),
		}},
	}
	// With the default limits: 10 emails × 5 failures from one IP trip the
	// per-IP limit (50); 4 IPs × 5 failures on one email trip the
	// per-email limit (20).
	var manyEmails, manyIPs []step
	for i := range 10 {
		manyEmails = append(manyEmails, fail(5, fmt.Sprintf("user%d@example.org", i), ip1))
		if i == 8 {
			manyEmails = append(manyEmails, allowed(ann, ip1))
		}
	}
	manyEmails = append(manyEmails, denied(ann, ip1, lockout.LimitIP, 15*time.Minute), allowed(ann, ip2))
	for i := range 4 {
		manyIPs = append(manyIPs, fail(5, ann, fmt.Sprintf("198.51.100.%d", i)))
		if i == 2 {
			manyIPs = append(manyIPs, allowed(ann, ip1))
		}
	}
	manyIPs = append(manyIPs, denied(ann, ip1, lockout.LimitEmail, 15*time.Minute),
		denied(ann, "2001:db8::1", lockout.LimitEmail, 15*time.Minute), allowed(bob, ip1))
	cases = append(cases,
		policyCase{"defaults: many emails from one IP", lockout.Policy{}, manyEmails},
		policyCase{"defaults: many IPs on one email", lockout.Policy{}, manyIPs},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _, clk := newService(t, lockout.Config{Policy: tc.policy})
			ctx := context.Background()
			for i, st := range tc.steps {
				msg := fmt.Sprintf("step %d %+v", i, st)
				switch st.op {
				case "fail":
					for range st.times {
						_, err := s.RecordFailure(ctx, st.email, st.ip)
						require.NoError(t, err, msg)
					}
				case "advance":
					clk.Add(st.by)
				case "success":
					require.NoError(t, s.RecordSuccess(ctx, st.email, st.ip), msg)
				case "unlock-pair":
					_, err := s.UnlockPair(ctx, st.email, st.ip)
					require.NoError(t, err, msg)
				case "unlock-email":
					_, err := s.UnlockEmail(ctx, st.email)
					require.NoError(t, err, msg)
				case "unlock-ip":
					_, err := s.UnlockIP(ctx, st.ip)
					require.NoError(t, err, msg)
				case "check":
					d, err := s.Check(ctx, st.email, st.ip)
					require.NoError(t, err, msg)
					assert.Equal(t, st.allowed, d.Allowed, msg)
					assert.Equal(t, st.limit, d.Limit, msg)
					assert.Equal(t, st.retry, d.RetryAfter, msg)
					if !st.allowed {
						assert.Equal(t, clk.Now().UTC().Truncate(time.Millisecond).Add(st.retry), d.Until, msg)
					}
				default:
					t.Fatalf("unknown op %q", st.op)
				}
			}
		})
	}
}

// RecordFailure returns the decision for the next attempt, the count, and
// LockedNow exactly once per lock.
func TestRecordFailureDecision(t *testing.T) {
	t.Parallel()
	var seen []lockout.Op
	s, _, _ := newService(t, lockout.Config{OnDecision: func(_ context.Context, op lockout.Op, d lockout.Decision) {
		seen = append(seen, op)
	}})
	ctx := context.Background()
	_, err := s.Check(ctx, ann, ip1)
	require.NoError(t, err)
	assert.Equal(t, []lockout.Op{lockout.OpCheck}, seen, "the hook sees each decision")
	for i := 1; i <= 7; i++ {
		d, err := s.RecordFailure(ctx, ann, ip1)
		require.NoError(t, err)
		assert.Equal(t, i, d.Failures)
		assert.Equal(t, i >= 5, !d.Allowed, "failure %d", i)
		assert.Equal(t, i == 5, d.LockedNow, "failure %d", i)
	}
	assert.Len(t, seen, 8)
}

func TestNewRejectsInvalidPolicy(t *testing.T) {
	t.Parallel()
	for _, p := range []lockout.Policy{
		{MaxFailures: -1},
		{Window: -time.Second},
		{LockDuration: time.Hour, MaxLockDuration: time.Minute},
		{EmailLimit: -2},
		{EmailLimit: 5},                 // one IP could trip it alone
		{MaxFailures: 8, EmailLimit: 6}, // likewise
		{IPLimit: 5},                    // one user could deny the IP
		{IPLimit: -5},
		{IPv6Prefix: 129},
	} {
		_, err := lockout.New(nil, lockout.Config{Policy: p})
		assert.Error(t, err, "%+v", p)
	}
	s, err := lockout.New(nil, lockout.Config{})
	require.NoError(t, err)
	assert.Equal(t, lockout.Policy{
		MaxFailures: 5, Window: 15 * time.Minute, LockDuration: 15 * time.Minute,
		MaxLockDuration: 24 * time.Hour, EmailLimit: 20, IPLimit: 50, IPv6Prefix: 64,
	}, s.Policy(), "the zero value means the documented defaults")
	s, err = lockout.New(nil, lockout.Config{Policy: lockout.Policy{MaxFailures: 30}})
	require.NoError(t, err, "a larger MaxFailures raises the limits' defaults")
	assert.Equal(t, 31, s.Policy().EmailLimit)
	assert.Equal(t, 50, s.Policy().IPLimit)
}
