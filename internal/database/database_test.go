package database_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestDSN(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "postgres://u@localhost/db", want: "postgres://u@localhost/db?sslmode=disable&timezone=UTC"},
		{in: "postgresql://u@db.internal:5432/db?timezone=Europe%2FParis", want: "postgresql://u@db.internal:5432/db?timezone=UTC"},
		{in: "postgres://u@db.internal/db?TimeZone=Asia%2FTokyo&TIMEZONE=x&application_name=a", want: "postgres://u@db.internal/db?application_name=a&timezone=UTC"},
		{in: "host=localhost dbname=x password=secret", err: "is not a postgres:// URL"},
		{in: "postgres://u:secret@[::1/x", err: "parse URL: missing ']' in host"},
	} {
		got, err := database.DSN(tc.in)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, tc.in)
			assert.NotContains(t, err.Error(), "secret", "passwords never appear in errors")
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got)
	}
}

func TestConfigSetsSessionLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := database.OpenConfig(pgtest.URL(t), database.Config{
		MaxOpenConns: 3, StatementTimeout: 250 * time.Millisecond, LockTimeout: 150 * time.Millisecond,
	})
	require.NoError(t, err)
	defer db.Close()
	var st, lt, tz string
	require.NoError(t, db.QueryRowContext(ctx, `SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), current_setting('TimeZone')`).Scan(&st, &lt, &tz))
	assert.Equal(t, "250ms", st)
	assert.Equal(t, "150ms", lt)
	assert.Equal(t, "UTC", tz)
	assert.Equal(t, 3, db.Stats().MaxOpenConnections)

	_, err = db.ExecContext(ctx, `SELECT pg_sleep(5)`)
	var pqErr *pq.Error
	require.True(t, errors.As(err, &pqErr), "got %v", err)
	assert.Equal(t, pq.ErrorCode("57014"), pqErr.Code, "statement_timeout cancelled the statement")
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://app:S3cretPW@db:5432/klozd":                      "postgres://app:xxxxx@db:5432/klozd",
		"postgres://app@db/klozd?password=S3cretPW&sslmode=require":  "postgres://app@db/klozd?password=xxxxx&sslmode=require",
		"postgresql://app@db/klozd?sslpassword=S3cretPW":             "postgresql://app@db/klozd?sslpassword=xxxxx",
		"postgres://app@db/klozd?sslmode=disable":                    "postgres://app@db/klozd?sslmode=disable",
		"host=db user=app password=S3cretPW dbname=klozd":            "<not a postgres:// URL>",
		"postgres://app:S3cretPW@[::1/x":                             "<not a postgres:// URL>",
		"postgres://app:S3cretPW@db1:5432,db2/klozd?sslmode=require": "postgres://app:xxxxx@db1:5432,db2:5432/klozd?sslmode=require",
		"postgres://db1,[::1]:6432/klozd":                            "postgres://db1:5432,[::1]:6432/klozd",
	} {
		assert.Equal(t, want, database.Redact(in), in)
	}
}
