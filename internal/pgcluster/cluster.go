// Package pgcluster starts a private, throwaway PostgreSQL server from the
// binaries installed on the machine, for tests, for the dev database of the
// drift check and for "dbctl dev".
//
// The server runs in a temporary directory, listens on 127.0.0.1 on a free
// port, and is tuned for speed over durability (fsync off). When the process
// runs as root, the server runs as the "postgres" user (or "nobody"), since
// initdb and postgres refuse root.
//
// A process that dies without calling [Cluster.Stop] (a panic, go test's
// -timeout, a kill) takes its server with it on Linux, and the next [Start]
// under the same temporary directory removes the files it left.
package pgcluster

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/lib/pq" // The server is probed through database/sql.
)

// ErrNoBinaries is returned by [Start] when no PostgreSQL server binaries
// can be found.
var ErrNoBinaries = errors.New("pgcluster: no PostgreSQL server binaries (initdb, postgres)")

// Options configure [Start]. The zero value is ready to use.
type Options struct {
	// BinDir holds initdb and postgres. Default: $PG_BINDIR, else the
	// directory of initdb found on PATH, else the newest
	// /usr/lib/postgresql/<version>/bin (where Debian puts them).
	BinDir string
	// Settings are extra server settings (postgres -c name=value), applied
	// over the defaults, which favour speed: fsync, synchronous_commit and
	// full_page_writes off, max_connections 300.
	Settings map[string]string
	// StartTimeout bounds how long Start waits for the server to accept
	// connections. Default: 30s.
	StartTimeout time.Duration
}

// Cluster is a running throwaway server. Its methods are safe for
// concurrent use.
type Cluster struct {
	dir      string   // temporary directory holding data/ and owner.lock
	lock     *os.File // owner.lock, locked while dir is in use (see newDir)
	binDir   string
	port     int
	cred     *syscall.Credential
	args     []string
	settings map[string]string // the server settings args passes
	timeout  time.Duration

	mu     sync.Mutex // guards proc, exited and lock
	proc   *os.Process
	exited chan struct{} // closed when proc has exited

	logMu sync.Mutex
	log   bytes.Buffer
}

// Start creates a cluster with initdb and starts its server. Stop it with
// [Cluster.Stop], which also removes its files. Start first removes the
// directories of clusters whose process died without stopping them.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	// Absolute, as the server reports its data directory (see waitReady).
	base, err := filepath.Abs(tempBase(cred))
	if err != nil {
		return nil, fmt.Errorf("pgcluster: temp dir: %w", err)
	}
	removeStale(base)
	dir, lock, err := newDir(base)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, lock: lock, binDir: binDir, cred: cred, timeout: opts.StartTimeout}
	if c.timeout == 0 {
		c.timeout = 30 * time.Second
	}
	if err := c.initdb(ctx); err != nil {
		_ = c.remove()
		return nil, err
	}
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": c.dataDir(),
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"max_connections":         "300",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	c.setArgs(settings)
	// Another process (another test binary, say) may take the port between
	// choosing and binding it; try a few.
	for attempt := 1; ; attempt++ {
		if c.port, err = pickPort(); err != nil {
			break
		}
		if err = c.start(ctx); err == nil || attempt == 5 || !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err != nil {
		_ = c.remove()
		return nil, err
	}
	return c, nil
}

// Port is the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// URL returns a connection URL for the superuser "postgres" to database db.
func (c *Cluster) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Stop shuts the server down (fast mode) and removes its files.
func (c *Cluster) Stop() error {
	err := c.Shutdown()
	if rmErr := c.remove(); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// remove removes the cluster's files, then gives up its ownership of them.
func (c *Cluster) remove() error {
	err := os.RemoveAll(c.dir)
	if err != nil {
		err = fmt.Errorf("pgcluster: remove %s: %w", c.dir, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lock != nil {
		_ = c.lock.Close()
		c.lock = nil
	}
	return err
}

// Shutdown stops the server in fast mode (open transactions are rolled back,
// clients disconnected) and keeps its files, so [Cluster.Restart] can bring
// it back with the same data on the same port.
func (c *Cluster) Shutdown() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return nil
	}
	proc, exited := c.proc, c.exited
	c.proc, c.exited = nil, nil
	_ = proc.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = proc.Kill()
		<-exited
		return errors.New("pgcluster: server did not stop within 30s; killed")
	}
}

// Restart is Shutdown followed by a start on the same port and data, as
// "pg_ctl restart -m fast" does. It fails, leaving the cluster stopped, if
// another process has taken the port in the meantime.
func (c *Cluster) Restart(ctx context.Context) error {
	if err := c.Shutdown(); err != nil {
		return err
	}
	return c.start(ctx)
}

// Log returns what the server has written to its log so far.
func (c *Cluster) Log() string {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	return c.log.String()
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }

// setArgs sets the server's command line from its settings, which it keeps
// for the standbys started from this cluster (see [Cluster.StartStandby]).
func (c *Cluster) setArgs(settings map[string]string) {
	c.settings = settings
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	c.args = []string{"-D", c.dataDir()}
	for _, k := range keys {
		c.args = append(c.args, "-c", k+"="+settings[k])
	}
}

func (c *Cluster) initdb(ctx context.Context) error {
	// The server user must reach the directory and own the data directory.
	if err := os.Chmod(c.dir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.Mkdir(c.dataDir(), 0o700); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(c.dataDir(), int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("pgcluster: chown data dir: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "initdb"),
		"-D", c.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	cmd.Dir = c.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgcluster: initdb: %w: %s", err, lastLines(string(out), 5))
	}
	return nil
}

func (c *Cluster) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	logStart := c.logLen()
	args := append([]string{"-p", strconv.Itoa(c.port)}, c.args...)
	// Not CommandContext: the server outlives ctx, which only bounds startup.
	cmd := exec.Command(filepath.Join(c.binDir, "postgres"), args...)
	cmd.Dir = c.dir
	cmd.SysProcAttr = serverProcAttr(c.cred)
	cmd.Stdout = &lockedWriter{mu: &c.logMu, w: &c.log}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgcluster: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := c.waitReady(ctx, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		log := c.logSince(logStart)
		if !errors.Is(err, errPortInUse) && strings.Contains(log, noTCPSockets) {
			err = fmt.Errorf("%w: port %d: %w", errPortInUse, c.port, err)
		}
		return fmt.Errorf("%w: %s", err, lastLines(log, 5))
	}
	c.proc, c.exited = cmd.Process, exited
	return nil
}

// waitReady waits until this cluster's own server accepts connections on
// its Unix socket, in its data directory, and then checks that its URL
// reaches that server. Waiting on 127.0.0.1:port instead would take another
// server that holds the port for this one, which has failed to bind it.
func (c *Cluster) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	local, err := sql.Open("postgres", c.socketDSN())
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer local.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if err = local.PingContext(ctx); err == nil {
			break
		}
		select {
		case <-exited:
			return errors.New("pgcluster: postgres exited during startup")
		case <-ctx.Done():
			return fmt.Errorf("pgcluster: postgres not ready after %s: %w", c.timeout, err)
		case <-tick.C:
		}
	}
	remote, err := sql.Open("postgres", c.URL("postgres")+"&connect_timeout=10")
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer remote.Close()
	var dataDir string
	if err := remote.QueryRowContext(ctx, "SHOW data_directory").Scan(&dataDir); err != nil {
		return fmt.Errorf("pgcluster: server ready on its socket but not at %s: %w", c.URL("postgres"), err)
	}
	if filepath.Clean(dataDir) != c.dataDir() {
		return fmt.Errorf("%w: port %d answered by the server of %s", errPortInUse, c.port, dataDir)
	}
	return nil
}

// socketDSN connects as "postgres" to the server over its Unix socket.
func (c *Cluster) socketDSN() string {
	quote := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace
	return fmt.Sprintf("host='%s' port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=2",
		quote(c.dataDir()), c.port)
}

func findBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("PG_BINDIR")
	}
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			return "", fmt.Errorf("%w in %s (PG_BINDIR or Options.BinDir): install them (Debian: apt-get install postgresql)", ErrNoBinaries, dir)
		}
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), "postgres")); err == nil {
				return filepath.Dir(p), nil
			}
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestVersion := "", -1
	for _, m := range matches {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m))))
		if err == nil && v > bestVersion {
			best, bestVersion = filepath.Dir(m), v
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w on PATH or in /usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql)", ErrNoBinaries)
	}
	return best, nil
}

// serverCredential is the user the server runs as: nil (the current user)
// unless the process is root, which initdb and postgres refuse.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		// Groups empty and NoSetGroups false: the server gets no
		// supplementary groups, rather than keeping root's.
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return nil, errors.New("pgcluster: running as root and no unprivileged user (postgres or nobody) to run the server as: create one (useradd postgres)")
}

// tempBase is where the cluster's directory goes: the temp directory, unless
// the server runs as another user who cannot reach it (TMPDIR under /root,
// say), then /tmp.
func tempBase(cred *syscall.Credential) string {
	base := os.TempDir()
	if cred == nil {
		return base
	}
	for p := base; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if p == filepath.Dir(p) {
			return base
		}
	}
}

// errPortInUse marks a start that failed because the port was taken, by
// another server or any other socket; Start then tries another port.
var errPortInUse = errors.New("pgcluster: port in use")

// noTCPSockets is how postgres reports, before exiting, that it could not
// listen on any of listen_addresses (the port was taken, mostly).
const noTCPSockets = "could not create any TCP/IP sockets"

// pickPort chooses the port of a new cluster.
var pickPort = freePort

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func (c *Cluster) logLen() int {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	return c.log.Len()
}

// logSince returns the log written after it was off bytes long.
func (c *Cluster) logSince(off int) string {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	return string(c.log.Bytes()[off:])
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
