package lockout_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
)

// Addresses in one IPv6 /64 share a counter; another /64 does not; an
// IPv4-mapped address counts as its IPv4 address.
func TestIPGrouping(t *testing.T) {
	t.Parallel()
	s, db, _ := newService(t, lockout.Config{})
	ctx := context.Background()
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "[2001:db8:1:2::7]:443"} {
		_, err := s.RecordFailure(ctx, ann, ip)
		require.NoError(t, err)
	}
	d, err := s.RecordFailure(ctx, ann, "2001:db8:1:2:ffff:ffff:ffff:ffff")
	require.NoError(t, err)
	assert.Equal(t, 5, d.Failures, "one /64, one counter")
	assert.False(t, d.Allowed)

	check, err := s.Check(ctx, ann, "2001:db8:1:3::1")
	require.NoError(t, err)
	assert.True(t, check.Allowed, "the next /64 is another client")

	for _, ip := range []string{"1.2.3.4", "::ffff:1.2.3.4", "::ffff:102:304", "1.2.3.4:80"} {
		_, err := s.RecordFailure(ctx, bob, ip)
		require.NoError(t, err)
	}
	check, err = s.Check(ctx, bob, "::ffff:1.2.3.4")
	require.NoError(t, err)
	assert.True(t, check.Allowed)
	d, err = s.RecordFailure(ctx, bob, "1.2.3.4")
	require.NoError(t, err)
	assert.Equal(t, 5, d.Failures, "::ffff:1.2.3.4 counts as 1.2.3.4")

	var ips []string
	for _, r := range rows(t, db) {
		ips = append(ips, r.IP.String)
	}
	assert.Equal(t, []string{"2001:db8:1:2::/64", "1.2.3.4"}, ips, "stored in canonical text")

	// An operator can unlock by any address of the prefix, or by the key.
	for _, key := range []string{"2001:db8:1:2::abcd", "2001:db8:1:2::/64"} {
		_, err = s.RecordFailure(ctx, ann, "2001:db8:1:2::1")
		require.NoError(t, err)
		n, err := s.UnlockIP(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, key)
		check, err = s.Check(ctx, ann, "2001:db8:1:2::1")
		require.NoError(t, err)
		assert.True(t, check.Allowed, key)
	}
}

func TestIPv6PrefixIsConfigurable(t *testing.T) {
	t.Parallel()
	s, _, _ := newService(t, lockout.Config{Policy: lockout.Policy{IPv6Prefix: 128, MaxFailures: 2}})
	ctx := context.Background()
	_, err := s.RecordFailure(ctx, ann, "2001:db8::1")
	require.NoError(t, err)
	d, err := s.RecordFailure(ctx, ann, "2001:db8::2")
	require.NoError(t, err)
	assert.Equal(t, 1, d.Failures, "/128: each address is its own client")
}

// Invalid emails are rejected with a typed error by every call, and
// nothing is written.
func TestBadEmailWritesNothing(t *testing.T) {
	t.Parallel()
	s, db, _ := newService(t, lockout.Config{})
	ctx := context.Background()
	for _, email := range []string{"", "   ", "a\x00b@x.org", "a\xffb@x.org", string(make([]byte, 400)), "ann\r\n@x.org"} {
		for _, ip := range []string{"192.0.2.1", ""} {
			_, err := s.RecordFailure(ctx, email, ip)
			assert.ErrorIs(t, err, lockout.ErrInvalidEmail)
			d, err := s.Check(ctx, email, ip)
			assert.ErrorIs(t, err, lockout.ErrInvalidEmail)
			assert.False(t, d.Allowed, "an invalid email is not allowed through")
			assert.ErrorIs(t, s.RecordSuccess(ctx, email, ip), lockout.ErrInvalidEmail)
			_, err = s.UnlockPair(ctx, email, ip)
			assert.ErrorIs(t, err, lockout.ErrInvalidEmail)
		}
		_, err := s.UnlockEmail(ctx, email)
		assert.ErrorIs(t, err, lockout.ErrInvalidEmail)
		_, err = s.Status(ctx, email)
		assert.ErrorIs(t, err, lockout.ErrInvalidEmail)
	}
	_, err := s.UnlockIP(ctx, "not an ip")
	assert.ErrorIs(t, err, lockout.ErrInvalidIP)
	assert.Empty(t, rows(t, db), "nothing written")
}

// Status shows the rows of an email for an admin view.
func TestStatus(t *testing.T) {
	t.Parallel()
	s, _, clk := newService(t, lockout.Config{})
	ctx := context.Background()
	for range 5 {
		_, err := s.RecordFailure(ctx, ann, "192.0.2.1")
		require.NoError(t, err)
	}
	clk.Add(time.Minute)
	_, err := s.RecordFailure(ctx, ann, "")
	require.NoError(t, err)
	now := clk.Now().UTC().Truncate(time.Millisecond)
	got, err := s.Status(ctx, " ANN@example.org")
	require.NoError(t, err)
	assert.Equal(t, []lockout.Attempt{
		{Email: ann, IP: "", Failures: 1, LastAttemptAt: now},
		{Email: ann, IP: "192.0.2.1", Failures: 5, LockedUntil: now.Add(14 * time.Minute), LastAttemptAt: now.Add(-time.Minute)},
	}, got)
}

// Operator calls name one key exactly: the key Status shows, any address
// under it, or the address itself. A typo or a prefix of another length is
// an error and unlocks nothing, not the unknown-IP pair or one /64 of a
// wider range.
func TestOperatorIPNamesOneKey(t *testing.T) {
	t.Parallel()
	s, _, _ := newService(t, lockout.Config{})
	ctx := context.Background()
	lock := func(ip string) {
		t.Helper()
		for range 5 {
			_, err := s.RecordFailure(ctx, ann, ip)
			require.NoError(t, err)
		}
	}
	allowed := func(ip string) bool {
		t.Helper()
		d, err := s.Check(ctx, ann, ip)
		require.NoError(t, err)
		return d.Allowed
	}
	lock("2001:db8:1:2::7")
	lock("192.0.2.1")
	lock("")

	for _, bad := range []string{"10.0.0.300", "2001:db8:1::/48", "2001:db8:1:2::/96", "192.0.2.0/24", "not an ip"} {
		_, err := s.UnlockPair(ctx, ann, bad)
		assert.ErrorIs(t, err, lockout.ErrInvalidIP, bad)
		_, err = s.UnlockIP(ctx, bad)
		assert.ErrorIs(t, err, lockout.ErrInvalidIP, bad)
	}
	_, err := s.UnlockIP(ctx, "")
	assert.ErrorIs(t, err, lockout.ErrInvalidIP, "UnlockIP needs an address")
	assert.False(t, allowed("2001:db8:1:2::7"))
	assert.False(t, allowed("192.0.2.1"))
	assert.False(t, allowed(""), "no bad IP fell back to the unknown-IP pair")

	st, err := s.Status(ctx, ann)
	require.NoError(t, err)
	keys := map[string]bool{}
	for _, a := range st {
		keys[a.IP] = true
	}
	require.True(t, keys["2001:db8:1:2::/64"], "%v", keys)
	n, err := s.UnlockPair(ctx, ann, "2001:db8:1:2::/64")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.True(t, allowed("2001:db8:1:2::7"), "the key Status shows unlocks its pair")
	n, err = s.UnlockPair(ctx, ann, "192.0.2.1/32")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.True(t, allowed("192.0.2.1"))
	assert.False(t, allowed(""), "the unknown-IP pair is unlocked only by an empty ip")
	n, err = s.UnlockPair(ctx, ann, "")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.True(t, allowed(""))
}
