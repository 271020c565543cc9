package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

func TestGC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)
	// 30 stale and 5 recent attempts; 40 expired and 6 live records.
	_, err := db.ExecContext(ctx, `
		INSERT INTO auth_attempts (id, email, "lastAttemptAt", "updatedAt")
			SELECT 'old' || i, 'old' || i || '@example.com', now() - interval '2 hours', now() FROM generate_series(1, 30) i;
		INSERT INTO auth_attempts (id, email, "lastAttemptAt", "updatedAt")
			SELECT 'new' || i, 'new' || i || '@example.com', (now() AT TIME ZONE 'UTC'), now() FROM generate_series(1, 5) i;
		INSERT INTO auth_attempts (id, email, "lockedUntil", "lastAttemptAt", "updatedAt")
			VALUES ('locked', 'locked@example.com', (now() AT TIME ZONE 'UTC') + interval '1 day', now() - interval '2 hours', now());
		INSERT INTO idempotency_records (id, key, route, "requestHash", "responseStatus", "responseBodyJson", "expiresAt")
			SELECT 'exp' || i, 'k' || i, 'POST /x', 'h', 201, '{}', (now() AT TIME ZONE 'UTC') - interval '1 minute' FROM generate_series(1, 40) i;
		INSERT INTO idempotency_records (id, key, route, "requestHash", "responseStatus", "responseBodyJson", "expiresAt")
			SELECT 'live' || i, 'l' || i, 'POST /x', 'h', 201, '{}', (now() AT TIME ZONE 'UTC') + interval '1 day' FROM generate_series(1, 6) i`)
	require.NoError(t, err)
	count := func(table string) (n int) {
		require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n))
		return n
	}

	r := dbctl(t, "gc", "--url", url, "--dry-run", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var res gcResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	assert.Equal(t, gcResult{DryRun: true, AuthAttempts: 30, IdempotencyRecords: 40}, res)
	assert.Equal(t, 36, count("auth_attempts"), "a dry run deletes nothing")
	assert.Equal(t, 46, count("idempotency_records"))

	r = dbctl(t, "gc", "--url", url, "--batch", "7")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "deleted 30 stale auth_attempts rows and 40 expired idempotency_records")
	assert.Equal(t, 6, count("auth_attempts"), "recent and locked rows stay")
	assert.Equal(t, 6, count("idempotency_records"), "live records stay")

	r = dbctl(t, "gc", "--url", url)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "deleted 0 stale auth_attempts rows and 0 expired idempotency_records")
}

func TestGCBadInput(t *testing.T) {
	t.Parallel()
	r := dbctl(t, "gc", "--url", "postgres://u@127.0.0.1:1/db", "--dry-run")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "127.0.0.1:1")
	for _, tc := range []struct{ flag, value, want string }{
		{"--batch", "0", "--batch must be at least 1"},
		{"--window", "0s", "--window 0s is shorter than 1m, likely a mistake"},
		{"--window", "30s", "--window 30s is shorter than 1m, likely a mistake"},
		{"--window", "-15m", "--window -15m0s is shorter than 1m"},
	} {
		r = dbctl(t, "gc", tc.flag, tc.value, "--url", "postgres://u@127.0.0.1:1/db")
		assert.Equal(t, exitUsage, r.code, tc.value)
		assert.Contains(t, r.stderr, tc.want)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), fmt.Sprintf("one line: %q", r.stderr))
	}
	r = dbctl(t, "gc", "-h")
	assert.Contains(t, oneLine(r.stderr), "must be at least the Window of the lockout Policy your services use; a shorter one deletes counters that are still counting")
}
