package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

// helperArgsEnv carries the dbctl arguments, as JSON, to a child process
// of the test binary; TestMain then runs [helperDbctl] instead of the tests.
const helperArgsEnv = "DBCTL_HELPER_ARGS"

// helperDbctl is dbctl in a child process: it says "ready" on stdout,
// waits for one byte on stdin (the parent's barrier), runs dbctl with the
// arguments of helperArgsEnv and exits with its code.
func helperDbctl(raw string) {
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintf(os.Stderr, "helper: %s: %v\n", helperArgsEnv, err)
		os.Exit(99)
	}
	fmt.Println("ready")
	if _, err := io.ReadFull(os.Stdin, make([]byte, 1)); err != nil {
		fmt.Fprintf(os.Stderr, "helper: barrier: %v\n", err)
		os.Exit(99)
	}
	os.Exit(run(context.Background(), args, os.Stdout, os.Stderr))
}

// child is one dbctl process started by dbctlProcess.
type child struct {
	cmd     *exec.Cmd
	release io.WriteCloser
	stdout  chan string
	stderr  bytes.Buffer
}

// dbctlProcess starts the test binary as dbctl with args and returns once
// the child is ready and blocked on the barrier.
func dbctlProcess(t *testing.T, args ...string) *child {
	t.Helper()
	raw, err := json.Marshal(args)
	require.NoError(t, err)
	c := &child{cmd: exec.Command(os.Args[0]), stdout: make(chan string, 1)}
	c.cmd.Env = append(os.Environ(), helperArgsEnv+"="+string(raw))
	c.cmd.Stderr = &c.stderr
	c.release, err = c.cmd.StdinPipe()
	require.NoError(t, err)
	out, err := c.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, c.cmd.Start())
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	require.NoError(t, err, "child did not get ready: %s", &c.stderr)
	require.Equal(t, "ready\n", line)
	go func() {
		rest, _ := io.ReadAll(r)
		c.stdout <- string(rest)
	}()
	return c
}

// Two dbctl processes, each with its own connections,
// released together on one fresh database: both succeed, the file is
// applied once, one revision row.
func TestConcurrentApplyFromTwoProcesses(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	args := []string{"migrate", "apply", "--url", url, "--dir", "../../migrations", "--lock-timeout", "1m"}
	children := []*child{dbctlProcess(t, args...), dbctlProcess(t, args...)}
	for _, c := range children { // both are started and blocked: release them
		_, err := c.release.Write([]byte{1})
		require.NoError(t, err)
		require.NoError(t, c.release.Close())
	}
	applied := 0
	for i, c := range children {
		stdout := <-c.stdout
		err := c.cmd.Wait()
		require.NoError(t, err, "child %d: exit %d\nstdout: %s\nstderr: %s", i, c.cmd.ProcessState.ExitCode(), stdout, &c.stderr)
		assert.Equal(t, exitOK, c.cmd.ProcessState.ExitCode())
		applied += strings.Count(stdout, "Applied "+firstFile)
		t.Logf("child %d: %s", i, strings.TrimSpace(stdout))
	}
	assert.Equal(t, 1, applied, "one process applied the file")
	assert.Len(t, revisions(t, pgtest.Open(t, url), "atlas_schema_revisions"), 1)
}
