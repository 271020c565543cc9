package pgcluster

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMain runs the binary as a helper process when deadOwnerDir asks: it
// creates a cluster directory under the base it is given, prints it and
// waits to be killed.
func TestMain(m *testing.M) {
	if base := os.Getenv("PGCLUSTER_HELPER_BASE"); base != "" {
		dir, _, err := newDir(base)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(dir)
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until killed
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// deadOwnerDir returns a cluster directory under base whose owner was
// killed (SIGKILL, so nothing of its own ran), with the owner's pid.
func deadOwnerDir(t *testing.T, base string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PGCLUSTER_HELPER_BASE="+base)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	dir := strings.TrimSpace(line)
	require.DirExists(t, dir, "helper: %s", line)
	return dir, cmd.Process.Pid
}

// withData gives the cluster directory dir a data directory, with a
// postmaster.pid naming pid unless pid is 0.
func withData(t *testing.T, dir string, pid int) string {
	t.Helper()
	data := filepath.Join(dir, "data")
	require.NoError(t, os.MkdirAll(filepath.Join(data, "base"), 0o700))
	if pid != 0 {
		pidFile := fmt.Sprintf("%d\n%s\n", pid, data)
		require.NoError(t, os.WriteFile(filepath.Join(data, "postmaster.pid"), []byte(pidFile), 0o600))
	}
	return dir
}

func TestRemoveStaleRemovesOnlyDirectoriesOfDeadOwnersWithoutServer(t *testing.T) {
	base := t.TempDir()

	deadNoServer, _ := deadOwnerDir(t, base)
	withData(t, deadNoServer, 0)
	deadServerDead, deadPid := deadOwnerDir(t, base)
	withData(t, deadServerDead, deadPid) // postmaster killed with its owner
	deadServerLive, _ := deadOwnerDir(t, base)
	withData(t, deadServerLive, os.Getpid()) // still shutting down, say
	live, lock, err := newDir(base)          // owned by this process
	require.NoError(t, err)
	defer lock.Close()
	withData(t, live, 0)
	unowned, err := os.MkdirTemp(base, dirPrefix) // being created, or older
	require.NoError(t, err)
	withData(t, unowned, 0)
	other := filepath.Join(base, "other")
	require.NoError(t, os.Mkdir(other, 0o700))

	removeStale(base)

	require.NoDirExists(t, deadNoServer, "dead owner, no server")
	require.NoDirExists(t, deadServerDead, "dead owner, dead server")
	require.DirExists(t, deadServerLive, "dead owner, live server")
	require.DirExists(t, live, "live owner")
	require.DirExists(t, unowned, "no owner.lock")
	require.DirExists(t, other, "not a cluster directory")

	require.NoError(t, lock.Close())
	removeStale(base)
	require.NoDirExists(t, live, "once its owner has let go")
}

func TestStartRemovesTheDirectoryOfAKilledProcess(t *testing.T) {
	cred, err := serverCredential()
	require.NoError(t, err)
	// A base of our own that the server user can reach.
	base, err := os.MkdirTemp(tempBase(cred), "pgcluster-test-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	t.Setenv("TMPDIR", base)
	require.Equal(t, base, tempBase(cred))

	stale, _ := deadOwnerDir(t, base)
	withData(t, stale, 0)
	c := startTest(t)

	require.NoDirExists(t, stale)
	require.Equal(t, base, filepath.Dir(c.dir))
	require.NoError(t, c.Stop())
	require.NoDirExists(t, c.dir)
}
