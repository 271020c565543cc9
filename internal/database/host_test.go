package database_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
)

// unsetenv clears key for the test and restores it after.
func unsetenv(t *testing.T, key string) {
	t.Setenv(key, "")
	require.NoError(t, os.Unsetenv(key))
}

// Not parallel: the cases set the PG* environment the driver reads.
func TestEffectiveHost(t *testing.T) {
	for _, tc := range []struct {
		name, url, pghost, pghostaddr, want string
		local                               bool
	}{
		{name: "URL host", url: "postgres://u@db.example.com/x", want: "db.example.com:5432"},
		{name: "URL host and port", url: "postgres://u@127.0.0.1:6543/x", want: "127.0.0.1:6543", local: true},
		{name: "IPv6 loopback", url: "postgres://u@[::1]:5433/x", want: "[::1]:5433", local: true},
		{name: "URL host wins over PGHOST", url: "postgres://u@localhost/x", pghost: "prod-db", want: "localhost:5432", local: true},
		{name: "no host: localhost", url: "postgres:///klozd", want: "localhost:5432", local: true},
		{name: "no host: PGHOST", url: "postgres:///klozd", pghost: "prod-db", want: "prod-db:5432"},
		{name: "no host: PGHOST socket", url: "postgres:///klozd", pghost: "/var/run/postgresql", want: "/var/run/postgresql/.s.PGSQL.5432", local: true},
		{name: "host parameter", url: "postgres:///klozd?host=prod-db&port=6000", want: "prod-db:6000"},
		{name: "host parameter socket", url: "postgres:///klozd?host=/tmp", want: "/tmp/.s.PGSQL.5432", local: true},
		{name: "hostaddr is dialled", url: "postgres://u@localhost/x?hostaddr=10.0.0.5", want: "10.0.0.5:5432"},
		{name: "PGHOSTADDR is dialled", url: "postgres:///klozd", pghostaddr: "10.0.0.6", want: "10.0.0.6:5432"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"PGHOST", "PGHOSTADDR", "PGPORT", "PGSERVICE"} {
				unsetenv(t, k)
			}
			if tc.pghost != "" {
				t.Setenv("PGHOST", tc.pghost)
			}
			if tc.pghostaddr != "" {
				t.Setenv("PGHOSTADDR", tc.pghostaddr)
			}
			got, err := database.EffectiveHost(tc.url)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.local, database.IsLocalHost(got))
		})
	}
}

func TestEffectiveHostErrors(t *testing.T) {
	_, err := database.EffectiveHost("postgres://u:s3cret@db:port/x")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret", "passwords never appear in errors")
	_, err = database.EffectiveHost("postgres:///x?host=a,b")
	assert.ErrorContains(t, err, "names 2 hosts")
}

// With PGHOST naming a remote server, a URL without a host is not local,
// so DSN does not turn TLS off for it.
func TestDSNFollowsPGHOST(t *testing.T) {
	t.Setenv("PGHOST", "prod-db")
	got, err := database.DSN("postgres:///klozd")
	require.NoError(t, err)
	assert.Equal(t, "postgres:///klozd?timezone=UTC", got)
}

func TestIsLocalHost(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"": true, "localhost": true, "LOCALHOST:5432": true, "127.0.0.1": true, "127.1.2.3:5432": true,
		"::1": true, "[::1]:5432": true, "::ffff:127.0.0.1": true, "/tmp/.s.PGSQL.5432": true, "@pg": true,
		"db.example.com": false, "db.example.com:5432": false, "10.0.0.5": false, "[2001:db8::1]:5432": false,
		"localhost.example.com": false,
	} {
		assert.Equal(t, want, database.IsLocalHost(host), "%q", host)
	}
}
