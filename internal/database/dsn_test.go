package database_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgtest"
)

func TestDSNHostsAndPooler(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		// Several hosts move to host= and port=, which both drivers read,
		// and the pool looks for a server that accepts writes.
		{in: "postgres://u:pw@db1.internal:5432,db2.internal:5433/db", want: "postgres://u:pw@/db?host=db1.internal%2Cdb2.internal&port=5432%2C5433&target_session_attrs=read-write&timezone=UTC"},
		{in: "postgres://u@localhost,[::1]:6000/db?target_session_attrs=any", want: "postgres://u@/db?host=localhost%2C%3A%3A1&port=5432%2C6000&sslmode=disable&target_session_attrs=any&timezone=UTC"},
		{in: "postgres://u@/db?host=127.0.0.1,127.0.0.2&port=1,2", want: "postgres://u@/db?host=127.0.0.1%2C127.0.0.2&port=1%2C2&sslmode=disable&target_session_attrs=read-write&timezone=UTC"},
		{in: "postgres://u@h1,h2/db?host=h3", err: "give them in one place"},
		{in: "postgres://u:secret@h1:x,h2/db", err: `port "x" of host "h1"`},
		{in: "postgres://u:secret@h1,,h2/db", err: "an empty host"},
		// Values are kept: a space is %20 (pgx keeps a '+'), a '+' is %2B.
		{in: "postgres://u@db.internal/db?application_name=a%20b%2Bc", want: "postgres://u@db.internal/db?application_name=a%20b%2Bc&timezone=UTC"},
		// pgbouncer=true is read here and becomes lib/pq's one-round-trip
		// unnamed statements.
		{in: "postgres://u@db.internal/db?pgbouncer=true", want: "postgres://u@db.internal/db?binary_parameters=yes&timezone=UTC"},
		{in: "postgres://u@db.internal/db?pgbouncer=false", want: "postgres://u@db.internal/db?timezone=UTC"},
		{in: "postgres://u@db.internal/db?pgbouncer=maybe", err: `pgbouncer="maybe": use pgbouncer=true`},
		{in: "postgres://u@db.internal/db?pgbouncer=true&binary_parameters=no", err: "contradicts pgbouncer=true"},
	} {
		got, err := database.DSN(tc.in)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, tc.in)
			if err != nil {
				assert.NotContains(t, err.Error(), "secret", "passwords never appear in errors")
			}
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestOpenConfigRejectsBadInput(t *testing.T) {
	_, err := database.OpenConfig("postgres://u@h/db", database.Config{Driver: "mysql"})
	assert.ErrorContains(t, err, `Config.Driver is "mysql"`)
	_, err = database.OpenConfig("postgres://u@h/db?pgbouncer=true&default_query_exec_mode=cache_statement", database.Config{Driver: database.DriverPGX})
	assert.ErrorContains(t, err, "keeps named statements")
}

// Both drivers get every value intact, a space included, and connect
// through a host list whose first host refuses connections.
func TestDriversKeepValuesAndTryEachHost(t *testing.T) {
	t.Parallel()
	base, err := url.Parse(pgtest.URL(t))
	require.NoError(t, err)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.Addr().String()
	require.NoError(t, dead.Close()) // nothing listens there now
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			u := *base
			u.Host = deadAddr + "," + base.Host
			q := u.Query()
			q.Set("application_name", "klozd test+one")
			u.RawQuery = q.Encode()
			raw := fmt.Sprintf("%s://%s@%s%s?%s", u.Scheme, u.User.String(), u.Host, u.Path, u.RawQuery)
			db, err := database.OpenConfig(raw, database.Config{Driver: drv, ConnectTimeout: 2e9})
			require.NoError(t, err)
			defer db.Close()
			var app, tsa string
			require.NoError(t, db.QueryRowContext(context.Background(),
				`SELECT current_setting('application_name'), current_setting('TimeZone')`).Scan(&app, &tsa))
			assert.Equal(t, "klozd test+one", app)
			assert.Equal(t, "UTC", tsa)
		})
	}
}
