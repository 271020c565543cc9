package pgcluster

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoBouncer is returned by [StartBouncer] when the pgbouncer binary
// cannot be found.
var ErrNoBouncer = errors.New("pgcluster: no pgbouncer binary: install it (Debian: apt-get install pgbouncer) or set PGBOUNCER to its path")

// Pool modes of PgBouncer.
const (
	PoolTransaction = "transaction"
	PoolSession     = "session"
)

// BouncerOptions configure [StartBouncer].
type BouncerOptions struct {
	// Host and Port are the PostgreSQL server PgBouncer pools. Every
	// database name is forwarded to the database of the same name there.
	Host string
	Port int
	// Users maps each role that may connect to its password ("" where the
	// server trusts it). PgBouncer logs in to the server as that role.
	Users map[string]string
	// PoolMode is PoolTransaction (the default) or PoolSession.
	PoolMode string
	// PoolSize is the number of server connections per (database, role).
	// Default 10.
	PoolSize int
	// Settings are extra [pgbouncer] settings over the defaults.
	Settings map[string]string
}

// Bouncer is a running PgBouncer, listening on 127.0.0.1.
type Bouncer struct {
	dir    string
	port   int
	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{}
	logMu  sync.Mutex
	log    bytes.Buffer
}

// StartBouncer starts a PgBouncer in front of opts.Host:opts.Port. Stop it
// with [Bouncer.Stop]. As root, it runs as the user the clusters run as.
func StartBouncer(ctx context.Context, opts BouncerOptions) (*Bouncer, error) {
	bin := os.Getenv("PGBOUNCER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("pgbouncer"); err != nil {
			if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr != nil {
				return nil, ErrNoBouncer
			}
			bin = "/usr/sbin/pgbouncer"
		}
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempBase(cred), "klozd-pgbouncer-")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: temp dir: %w", err)
	}
	if err = os.Chmod(dir, 0o755); err == nil && cred != nil {
		// pgbouncer writes its pid file here as cred.
		err = os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	b := &Bouncer{dir: dir}
	for attempt := 1; ; attempt++ {
		if b.port, err = pickPort(); err != nil {
			break
		}
		if err = b.writeConfig(opts); err != nil {
			break
		}
		if err = b.start(ctx, bin, cred); err == nil || attempt == 5 || !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

func (b *Bouncer) writeConfig(opts BouncerOptions) error {
	var auth strings.Builder
	users := make([]string, 0, len(opts.Users))
	for u := range opts.Users {
		users = append(users, u)
	}
	sort.Strings(users)
	quote := strings.NewReplacer(`"`, `""`).Replace
	for _, u := range users {
		fmt.Fprintf(&auth, "%q %q\n", quote(u), quote(opts.Users[u]))
	}
	if err := os.WriteFile(filepath.Join(b.dir, "users.txt"), []byte(auth.String()), 0o644); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	settings := map[string]string{
		"listen_addr":        "127.0.0.1",
		"listen_port":        strconv.Itoa(b.port),
		"unix_socket_dir":    "",
		"auth_type":          "trust",
		"auth_file":          filepath.Join(b.dir, "users.txt"),
		"pool_mode":          cmp.Or(opts.PoolMode, PoolTransaction),
		"default_pool_size":  strconv.Itoa(cmp.Or(opts.PoolSize, 10)),
		"max_client_conn":    "2000",
		"pidfile":            filepath.Join(b.dir, "pgbouncer.pid"),
		"logfile":            "",
		"log_connections":    "0",
		"log_disconnections": "0",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	fmt.Fprintf(&conf, "[databases]\n* = host=%s port=%d\n\n[pgbouncer]\n", opts.Host, opts.Port)
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	if err := os.WriteFile(b.configPath(), []byte(conf.String()), 0o644); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

func (b *Bouncer) configPath() string { return filepath.Join(b.dir, "pgbouncer.ini") }

func (b *Bouncer) start(ctx context.Context, bin string, cred *syscall.Credential) error {
	cmd := exec.Command(bin, b.configPath())
	cmd.Dir = b.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGTERM}
	w := &lockedWriter{mu: &b.logMu, w: &b.log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgcluster: start pgbouncer: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	for {
		// pgbouncer writes its pid file once it listens.
		if _, err := os.Stat(filepath.Join(b.dir, "pgbouncer.pid")); err == nil {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				_ = c.Close()
				b.mu.Lock()
				b.proc, b.exited = cmd.Process, exited
				b.mu.Unlock()
				return nil
			}
		}
		select {
		case <-exited:
			log := b.Log()
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("%w: pgbouncer: %s", errPortInUse, lastLines(log, 3))
			}
			return fmt.Errorf("pgcluster: pgbouncer exited during startup: %s", lastLines(log, 5))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("pgcluster: pgbouncer not listening on %s after 10s: %s", addr, lastLines(b.Log(), 5))
		case <-tick.C:
		}
	}
}

// Port is the port PgBouncer listens on at 127.0.0.1.
func (b *Bouncer) Port() int { return b.port }

// Addr is PgBouncer's host:port.
func (b *Bouncer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Log returns what PgBouncer has written so far.
func (b *Bouncer) Log() string {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.log.String()
}

// Stop shuts PgBouncer down at once (closing its clients' connections) and
// removes its files.
func (b *Bouncer) Stop() error {
	b.mu.Lock()
	proc, exited := b.proc, b.exited
	b.proc = nil
	b.mu.Unlock()
	var err error
	if proc != nil {
		_ = proc.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = proc.Kill()
			<-exited
			err = errors.New("pgcluster: pgbouncer did not stop within 10s; killed")
		}
	}
	if rmErr := os.RemoveAll(b.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("pgcluster: remove %s: %w", b.dir, rmErr)
	}
	return err
}
