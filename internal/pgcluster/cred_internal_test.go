package pgcluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// procGroups returns the supplementary groups of process pid, from Linux's
// /proc/<pid>/status.
func procGroups(t *testing.T, pid int) []string {
	t.Helper()
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	require.NoError(t, err)
	for line := range strings.Lines(string(status)) {
		if groups, ok := strings.CutPrefix(line, "Groups:"); ok {
			return strings.Fields(groups)
		}
	}
	t.Fatalf("no Groups line in /proc/%d/status", pid)
	return nil
}

func TestServerStartedByRootHasNoSupplementaryGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the server runs as the current user, with its groups, unless we are root")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	// Give this process a supplementary group the server must not inherit.
	groups, err := syscall.Getgroups()
	require.NoError(t, err)
	require.NoError(t, syscall.Setgroups(append(groups, 4242)))
	t.Cleanup(func() { require.NoError(t, syscall.Setgroups(groups)) })
	require.Contains(t, procGroups(t, os.Getpid()), "4242")

	c := startTest(t)
	c.mu.Lock()
	pid := c.proc.Pid
	c.mu.Unlock()
	require.Empty(t, procGroups(t, pid))
}
