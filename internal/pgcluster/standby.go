package pgcluster

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StandbyOptions configure [Cluster.StartStandby]. The zero value starts an
// asynchronous standby named "standby".
type StandbyOptions struct {
	// Name is the standby's application_name, which the primary's
	// pg_stat_replication and synchronous_standby_names know it by.
	// Default "standby".
	Name string
	// Synchronous makes the primary wait for this standby: its
	// synchronous_standby_names is set to Name (ALTER SYSTEM, then a
	// reload), so a commit returns only once the standby has flushed its
	// WAL. It needs a primary whose synchronous_commit is on (or
	// remote_write, remote_apply): the defaults turn it off, so start the
	// primary with Settings{"synchronous_commit": "on"}; StartStandby
	// refuses a primary with it off or local.
	Synchronous bool
	// Settings are extra server settings of the standby, over the
	// primary's.
	Settings map[string]string
}

// StartStandby starts a streaming standby of the running cluster c: a base
// backup of c (pg_basebackup over replication, streaming the WAL it needs),
// started with standby.signal and a primary_conninfo naming c, on its own
// free port on 127.0.0.1, as the same user. It returns once the standby
// accepts (read-only) connections and streams from c; with
// opts.Synchronous, once c counts it as its synchronous standby.
//
// The standby is a [Cluster]: stop it with [Cluster.Stop]. It takes c's
// settings, so it is as little durable on its own as c is (fsync off, by
// default). c keeps its synchronous_standby_names after the standby is
// stopped: commits on c then wait for it forever.
func (c *Cluster) StartStandby(ctx context.Context, opts StandbyOptions) (*Cluster, error) {
	name := cmp.Or(opts.Name, "standby")
	if strings.ContainsAny(name, `"' \`) {
		return nil, fmt.Errorf("pgcluster: standby name %q: use letters, digits and _", name)
	}
	if opts.Synchronous {
		mode := strings.ToLower(c.settings["synchronous_commit"])
		if mode == "off" || mode == "local" || mode == "false" || mode == "0" {
			return nil, fmt.Errorf("pgcluster: a synchronous standby needs a primary with synchronous_commit on; "+
				"this one runs with %q: start it with Options.Settings{\"synchronous_commit\": \"on\"}", mode)
		}
	}
	base, err := filepath.Abs(tempBase(c.cred))
	if err != nil {
		return nil, fmt.Errorf("pgcluster: temp dir: %w", err)
	}
	dir, lock, err := newDir(base)
	if err != nil {
		return nil, err
	}
	s := &Cluster{dir: dir, lock: lock, binDir: c.binDir, cred: c.cred, timeout: c.timeout}
	if err := s.baseBackup(ctx, c); err != nil {
		_ = s.remove()
		return nil, err
	}
	settings := map[string]string{}
	for k, v := range c.settings {
		settings[k] = v
	}
	settings["unix_socket_directories"] = s.dataDir()
	settings["hot_standby"] = "on"
	settings["primary_conninfo"] = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=%s sslmode=disable", c.port, name)
	// The primary's, if any, would make the promoted standby wait for a
	// standby of its own.
	settings["synchronous_standby_names"] = ""
	for k, v := range opts.Settings {
		settings[k] = v
	}
	s.setArgs(settings)
	for attempt := 1; ; attempt++ {
		if s.port, err = pickPort(); err != nil {
			break
		}
		if err = s.start(ctx); err == nil || attempt == 5 || !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err == nil && opts.Synchronous {
		err = c.exec(ctx, fmt.Sprintf(`ALTER SYSTEM SET synchronous_standby_names = '"%s"'`, name), `SELECT pg_reload_conf()`)
	}
	if err == nil {
		err = c.waitStreaming(ctx, name, opts.Synchronous)
	}
	if err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// baseBackup copies primary's data directory into s's, with standby.signal.
func (s *Cluster) baseBackup(ctx context.Context, primary *Cluster) error {
	if err := os.Chmod(s.dir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.Mkdir(s.dataDir(), 0o700); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if s.cred != nil {
		if err := os.Chown(s.dataDir(), int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("pgcluster: chown data dir: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "pg_basebackup"),
		"-D", s.dataDir(), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-X", "stream", "-c", "fast", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "PGSSLMODE=disable")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgcluster: pg_basebackup: %w: %s", err, lastLines(string(out), 5))
	}
	signal := filepath.Join(s.dataDir(), "standby.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if s.cred != nil {
		if err := os.Chown(signal, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
	}
	return nil
}

// waitStreaming waits until the standby name streams from c and, when sync
// is set, is c's synchronous standby.
func (c *Cluster) waitStreaming(ctx context.Context, name string, sync bool) error {
	want := "async"
	if sync {
		want = "sync"
	}
	return c.poll(ctx, fmt.Sprintf("standby %s streaming (%s)", name, want), func(db *sql.DB) (bool, error) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_replication
			WHERE application_name = $1 AND state = 'streaming' AND sync_state = $2`, name, want).Scan(&n)
		return n > 0, err
	})
}

// StopImmediate stops the server in immediate mode, as "pg_ctl stop -m
// immediate" does: SIGQUIT to the postmaster, which kills every server
// process at once, without a checkpoint, cutting its clients off. It is
// the abrupt end of a primary that fails over. The files stay: a
// [Cluster.Restart] brings the server back after crash recovery.
func (c *Cluster) StopImmediate() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return nil
	}
	proc, exited := c.proc, c.exited
	c.proc, c.exited = nil, nil
	_ = proc.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = proc.Kill()
		<-exited
		return errors.New("pgcluster: server did not stop within 30s of SIGQUIT; killed")
	}
}

// Promote makes a standby the primary (pg_promote) and returns once it
// accepts writes: it is out of recovery and its sessions are read-write.
// It is bounded by the cluster's StartTimeout.
func (c *Cluster) Promote(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	db, err := sql.Open("postgres", c.socketDSN())
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer db.Close()
	var ok bool
	if err := db.QueryRowContext(ctx, `SELECT pg_promote(true, $1)`, max(1, int(c.timeout.Seconds()))).Scan(&ok); err != nil {
		return fmt.Errorf("pgcluster: promote: %w", err)
	}
	if !ok {
		return fmt.Errorf("pgcluster: promote: not promoted within %s: %s", c.timeout, lastLines(c.Log(), 5))
	}
	return c.poll(ctx, "the promoted server accepting writes", func(db *sql.DB) (bool, error) {
		var recovery bool
		var readOnly string
		err := db.QueryRowContext(ctx, `SELECT pg_is_in_recovery(), current_setting('transaction_read_only')`).Scan(&recovery, &readOnly)
		return !recovery && readOnly == "off", err
	})
}

// exec runs statements on c as the superuser, over its socket.
func (c *Cluster) exec(ctx context.Context, stmts ...string) error {
	db, err := sql.Open("postgres", c.socketDSN())
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("pgcluster: %s: %w", q, err)
		}
	}
	return nil
}

// poll calls done on a pool over c's socket every 10ms until it reports
// true, ctx ends or the cluster's StartTimeout has passed.
func (c *Cluster) poll(ctx context.Context, what string, done func(*sql.DB) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	db, err := sql.Open("postgres", c.socketDSN())
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer db.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := done(db)
		if ok && err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("pgcluster: waiting for %s: %w", what, err)
		case <-tick.C:
		}
	}
}

// Pid is the process id of the running server's postmaster, or 0 when it
// is stopped. Faults that signal server processes start from it.
func (c *Cluster) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid
}
