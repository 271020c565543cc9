package soak

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The checker reports each kind of violation it exists for.
func TestInvariantsCatchViolations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)
	_, err := db.ExecContext(ctx, effectsDDL+`;
		INSERT INTO soak_effects ("key", "instance", "nonce") VALUES ('twice', 'i0', 'n1'), ('twice', 'i1', 'n2'), ('replayed', 'i0', 'n3'), ('fine', 'i0', 'n4');
		INSERT INTO idempotency_records (id, key, route, "requestHash", "responseStatus", "responseBodyJson", "expiresAt")
			VALUES ('r1', 'k', 'POST /orders', 'h', 500, '{}', now() + interval '1 hour');
		INSERT INTO auth_attempts (id, email, ip, "failuresCount", "updatedAt") VALUES ('a1', 'u@example.com', '192.0.2.1', 3, now())`)
	require.NoError(t, err)
	keys := map[string]*keyState{
		"twice":      {answered: true, originals: 1, bodies: []string{`{"key":"twice","nonce":"n1"}`}},
		"missing":    {answered: true, originals: 1, bodies: []string{`{"key":"missing","nonce":"x"}`}},
		"replayed":   {answered: true, originals: 1, bodies: []string{`{"key":"replayed","nonce":"n3"}`, `{"key":"replayed","nonce":"other"}`}},
		"unanswered": {},
		"fine":       {answered: true, originals: 1, bodies: []string{`{"key":"fine","nonce":"n4"}`}},
	}
	pairs := []*pair{{email: "u@example.com", ip: "192.0.2.1", recorded: 5}}
	v, err := checkInvariants(ctx, &env{url: url}, keys, pairs)
	require.NoError(t, err)
	all := strings.Join(v, "\n")
	for _, want := range []string{
		"key twice: the handler ran 2 times",
		"key missing: a client got 2xx but the side effect is missing",
		"key replayed: a response differs from the original",
		"key unanswered: no success after the fault",
		"1 stored records have a 5xx status",
		"failuresCount is 3, clients were told 5 failures were recorded",
		"5 failures recorded but the pair is not locked",
	} {
		assert.Contains(t, all, want)
	}
	assert.NotContains(t, all, "key fine")
}

// A short run of every scenario finds no violation. "make soak" runs the
// full-size suite.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak suite takes a few seconds; run without -short")
	}
	// A short lease keeps the wait before the re-send phase short; the
	// session limits are scaled down with it, so that the slow-database
	// fault (locks held for twice the statement timeout) ends within it.
	results, err := Run(context.Background(), Config{
		Orders: 60, LoginPairs: 10, LoginsPerPair: 7, Concurrency: 16, TimeLimit: time.Minute,
		Lease: time.Second, StatementTimeout: 300 * time.Millisecond, LockTimeout: 150 * time.Millisecond,
	}, nil)
	require.NoError(t, err)
	require.Len(t, results, len(Scenarios()))
	for _, r := range results {
		assert.Empty(t, r.Violations, r.Scenario)
		assert.Positive(t, r.Succeeded, r.Scenario)
		assert.Empty(t, r.Note, r.Scenario)
		if r.Scenario != "two-instances-bare" {
			assert.Equal(t, 60, r.Resent, r.Scenario)
			assert.Equal(t, r.Resent, r.ReplayedAfterLease, r.Scenario)
		}
	}
}
