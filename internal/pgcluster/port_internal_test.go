package pgcluster

import (
	"context"
	"database/sql"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// startTest starts a cluster stopped when the test ends.
func startTest(t *testing.T) *Cluster {
	t.Helper()
	c, err := Start(context.Background(), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

// dataDirAt returns the data directory of the server url reaches.
func dataDirAt(t *testing.T, url string) string {
	t.Helper()
	db, err := sql.Open("postgres", url)
	require.NoError(t, err)
	defer db.Close()
	var dir string
	require.NoError(t, db.QueryRow("SHOW data_directory").Scan(&dir))
	return dir
}

// clientSocketPort binds, without listening, a socket to a free port of
// 127.0.0.1, as a client connection's ephemeral port is bound, and returns
// the port, held until the test ends.
func clientSocketPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	return sa.(*syscall.SockaddrInet4).Port
}

// withFirstPort has Start try port first, then free ports, until the test
// ends.
func withFirstPort(t *testing.T, port int) {
	t.Helper()
	first := true
	pickPort = func() (int, error) {
		if first {
			first = false
			return port, nil
		}
		return freePort()
	}
	t.Cleanup(func() { pickPort = freePort })
}

func TestStartMovesToAnotherPortWhenItsPortIsTaken(t *testing.T) {
	holders := map[string]func(t *testing.T) int{
		"by another cluster's server": func(t *testing.T) int { return startTest(t).Port() },
		"by a client socket":          clientSocketPort,
	}
	for name, hold := range holders {
		t.Run(name, func(t *testing.T) {
			taken := hold(t)
			withFirstPort(t, taken)
			c := startTest(t)
			require.NotEqual(t, taken, c.Port())
			require.Equal(t, c.dataDir(), dataDirAt(t, c.URL("postgres")), "the URL reaches this cluster's server")
		})
	}
}

func TestRestartFailsWhenAnotherServerTookThePort(t *testing.T) {
	ctx := context.Background()
	a, b := startTest(t), startTest(t)
	require.NoError(t, b.Shutdown())
	b.port = a.port // as if a's server had bound b's port while b was down

	err := b.Restart(ctx)
	require.ErrorIs(t, err, errPortInUse)
	require.ErrorContains(t, err, noTCPSockets, "the error quotes the server's log")
	require.Nil(t, b.proc, "b is left stopped")
	require.Equal(t, a.dataDir(), dataDirAt(t, a.URL("postgres")), "a is unharmed")
}

func TestStartFailsAfterFiveTakenPorts(t *testing.T) {
	taken := clientSocketPort(t)
	pickPort = func() (int, error) { return taken, nil }
	t.Cleanup(func() { pickPort = freePort })

	_, err := Start(context.Background(), Options{})
	require.ErrorIs(t, err, errPortInUse)
}
