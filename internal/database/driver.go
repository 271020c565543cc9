package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// OpenConfig opens a pool on rawURL (see [DSN] for what it makes of the
// URL) with cfg's driver and limits. It does not connect; call PingContext
// to check the server is reachable and, in pooler-safe mode, that the
// timeouts hold.
//
// With pgbouncer=true in the URL the pool is pooler-safe, for PgBouncer
// (or any pooler) in transaction mode, where each transaction may run on
// another server connection: the services keep no named prepared
// statement and no session state, each statement travels as an unnamed
// one in a single round trip (lib/pq with binary_parameters=yes, pgx with
// default_query_exec_mode=cache_describe), and StatementTimeout and
// LockTimeout are checked on the server instead of being sent. Without it,
// the services prepare their statements on each connection.
//
// A connection whose statement failed because the session is read-only
// (SQLSTATE 25006: a standby, or a server turned read-only) is closed
// rather than returned to the pool, so that the pool reconnects, through a
// multi-host URL's target_session_attrs, to a server that accepts writes.
func OpenConfig(rawURL string, cfg Config) (*sql.DB, error) {
	p, err := makePlan(rawURL, cfg)
	if err != nil {
		return nil, err
	}
	base, err := openConnector(p.driver, p.dsn)
	if err != nil {
		return nil, err
	}
	c := &connector{base: base, drv: &Driver{Driver: base.Driver(), pgbouncer: p.pgbouncer}}
	if p.pgbouncer {
		c.statementTimeout, c.lockTimeout = cfg.StatementTimeout, cfg.LockTimeout
	}
	db := sql.OpenDB(c)
	if cfg.MaxOpenConns > 0 {
		db.SetMaxOpenConns(cfg.MaxOpenConns)
	}
	if cfg.MaxIdleConns > 0 {
		db.SetMaxIdleConns(cfg.MaxIdleConns)
	}
	return db, nil
}

func openConnector(name, dsn string) (driver.Connector, error) {
	if name == DriverPQ {
		c, err := pq.NewConnector(dsn)
		if err != nil {
			return nil, fmt.Errorf("database: open: %w", ParseError(err))
		}
		c.Dialer(netDialer{})
		return c, nil
	}
	registered := false
	for _, d := range sql.Drivers() {
		registered = registered || d == name
	}
	if !registered {
		return nil, fmt.Errorf("database: driver %q is not registered: import _ \"github.com/jackc/pgx/v5/stdlib\" in the program", name)
	}
	probe, err := sql.Open(name, "")
	if err != nil {
		return nil, fmt.Errorf("database: open: %w", err)
	}
	d := probe.Driver()
	_ = probe.Close()
	if dc, ok := d.(driver.DriverContext); ok {
		c, err := dc.OpenConnector(dsn)
		if err != nil {
			return nil, fmt.Errorf("database: open: %w", ParseError(err))
		}
		return c, nil
	}
	return dsnConnector{d, dsn}, nil
}

type dsnConnector struct {
	d   driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.d }

// Driver is the driver.Driver of a pool opened by [OpenConfig], as
// (*sql.DB).Driver returns it. It tells the services how the pool was
// opened; see [PoolerSafe].
type Driver struct {
	driver.Driver
	pgbouncer bool
}

// PoolerSafe reports whether db was opened by [OpenConfig] with
// pgbouncer=true: the services then run no named prepared statement on it.
func PoolerSafe(db *sql.DB) bool {
	if db == nil {
		return false
	}
	d, ok := db.Driver().(*Driver)
	return ok && d.pgbouncer
}

type connector struct {
	base                          driver.Connector
	drv                           *Driver
	statementTimeout, lockTimeout time.Duration // checked on each new connection when set
}

func (c *connector) Driver() driver.Driver { return c.drv }

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	socks := &sockets{}
	// The whole connection start (dial, TLS, authentication, the timeout
	// check) ends when ctx does.
	stop := context.AfterFunc(ctx, socks.kill)
	defer stop()
	dc, err := c.base.Connect(context.WithValue(ctx, socketsKey{}, socks))
	if err == nil && (c.statementTimeout > 0 || c.lockTimeout > 0) {
		if err = c.checkTimeouts(ctx, dc); err != nil {
			_ = dc.Close()
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("database: connect: %w (%w)", ctx.Err(), err)
		}
		return nil, err
	}
	cn := &conn{Conn: dc}
	if len(socks.conns) > 0 {
		cn.socks = socks
	}
	return cn, nil
}

// checkTimeouts fails unless the session's statement_timeout and
// lock_timeout are set and no longer than configured: through a pooler
// they cannot be sent at connection start, so the role must carry them.
func (c *connector) checkTimeouts(ctx context.Context, dc driver.Conn) error {
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return fmt.Errorf("database: the %T connection cannot run a query to check the timeouts", dc)
	}
	rows, err := q.QueryContext(ctx, `SELECT current_user::text,
		(SELECT setting FROM pg_settings WHERE name = 'statement_timeout'),
		(SELECT setting FROM pg_settings WHERE name = 'lock_timeout')`, nil)
	if err != nil {
		return fmt.Errorf("database: check the session's timeouts: %w", err)
	}
	defer rows.Close()
	vals := make([]driver.Value, 3)
	if err := rows.Next(vals); err != nil {
		return fmt.Errorf("database: check the session's timeouts: %w", err)
	}
	role := text(vals[0])
	for i, want := range []struct {
		name string
		d    time.Duration
	}{{"statement_timeout", c.statementTimeout}, {"lock_timeout", c.lockTimeout}} {
		if want.d <= 0 {
			continue
		}
		ms, err := strconv.ParseInt(text(vals[i+1]), 10, 64)
		if err != nil {
			return fmt.Errorf("database: check the session's timeouts: %s is %q", want.name, text(vals[i+1]))
		}
		if got := time.Duration(ms) * time.Millisecond; got <= 0 || got > want.d {
			shown := "0 (none)"
			if got > 0 {
				shown = got.String()
			}
			return fmt.Errorf("database: %s=true: the server's %s is %s, over the configured %s, and a pooler refuses it as a startup parameter: set it for the role (ALTER ROLE %s SET %s = '%dms') or drop the limit from the Config",
				PgBouncerParam, want.name, shown, want.d, quoteIdent(role), want.name, want.d.Milliseconds())
		}
	}
	return nil
}

func text(v driver.Value) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return fmt.Sprint(v)
}

func quoteIdent(s string) string {
	out := []byte{'"'}
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, s[i])
	}
	return string(append(out, '"'))
}

// conn wraps a driver connection to drop it from the pool once a
// statement on it failed with [ReadOnlyTransaction]. It passes every
// optional interface through to the driver's connection.
type conn struct {
	driver.Conn
	bad   atomic.Bool // read-only, ended by the server, or cut by a deadline: drop it
	socks *sockets    // nil when the driver dials for itself (pgx)
}

// watch closes c's sockets and marks c bad if ctx ends before the returned
// stop is called (see [DeadlineSlack]).
func (c *conn) watch(ctx context.Context) (stop func() bool) {
	if c.socks == nil || ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() {
		c.bad.Store(true)
		c.socks.kill()
	})
}

// ErrOutcomeUnknown is wrapped by the error of a statement whose
// connection broke after the statement was sent (the reply was lost, the
// connection reset): it may have run, and committed, or not. database/sql
// runs a statement again on another connection when the driver reports a
// broken connection, and lib/pq reports one even after sending; on a pool
// opened by [OpenConfig] nothing that was sent is run again, so that no
// write runs twice. The caller decides: the services settle it with the
// statement's own id (idem's claim token) or answer that it may not have
// happened.
var ErrOutcomeUnknown = errors.New("database: the connection broke after the statement was sent, so it may or may not have run")

// sent returns how many bytes c's driver has written so far.
func (c *conn) sent() int64 {
	if c.socks == nil {
		return 0
	}
	return c.socks.written.Load()
}

// after settles the error of a call that began when c had sent since
// bytes: the context's error when the watch cut the call short; a broken
// connection after something was sent becomes [ErrOutcomeUnknown], which
// database/sql does not run again; then [conn.seen].
func (c *conn) after(ctx context.Context, stopped bool, since int64, err error) error {
	if err == nil {
		return nil
	}
	err = cut(ctx, stopped, err)
	if ctx.Err() == nil && c.brokenAfterSend(since, err) {
		c.bad.Store(true)
		return fmt.Errorf("%w (%v)", ErrOutcomeUnknown, err)
	}
	return c.seen(err)
}

// brokenAfterSend reports whether err is a broken connection after the
// call had sent something. lib/pq's sockets count what was sent; pgx
// reports a failure before sending as driver.ErrBadConn (its SafeToRetry),
// so a connection that broke with anything else had sent the statement.
func (c *conn) brokenAfterSend(since int64, err error) bool {
	if c.socks != nil {
		return errors.Is(err, driver.ErrBadConn) && c.socks.written.Load() > since
	}
	var ne net.Error
	return !errors.Is(err, driver.ErrBadConn) &&
		(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne))
}

// cut returns err, or ctx's error when the call was cut short by ctx.
func cut(ctx context.Context, stopped bool, err error) error {
	if err != nil && !stopped && ctx.Err() != nil {
		return fmt.Errorf("database: %w: the connection was closed to end the call (%w)", ctx.Err(), err)
	}
	return err
}

// seen marks c unusable when err says the session is read-only (a
// standby, a server turned read-only) or was ended by the server
// (terminated, crashed, not accepting connections), and reports it as
// driver.ErrBadConn too, as lib/pq does for every FATAL error: database/sql
// then drops the connection and, when the error came before any row, runs
// an autocommitted statement again on another. That is safe: a read-only
// session refuses a write before it runs, and a session the server ended
// cannot have committed the statement it answered with the error. (pgx
// returns the server's error alone, and the pool would hand a request a
// connection killed while idle.) Inside a transaction nothing is run again.
func (c *conn) seen(err error) error {
	if err == nil {
		return nil
	}
	switch SQLState(err) {
	case ReadOnlyTransaction, AdminShutdown, CrashShutdown, CannotConnectNow:
		c.bad.Store(true)
		return fmt.Errorf("%w (%w)", err, driver.ErrBadConn)
	}
	return err
}

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	st, err := c.Conn.Prepare(query)
	if err != nil {
		return nil, c.seen(err)
	}
	return &stmt{Stmt: st, c: c}, nil
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	p, ok := c.Conn.(driver.ConnPrepareContext)
	if !ok {
		return c.Prepare(query)
	}
	stop := c.watch(ctx)
	st, err := p.PrepareContext(ctx, query)
	if err = cut(ctx, stop(), err); err != nil {
		return nil, c.seen(err)
	}
	return &stmt{Stmt: st, c: c}, nil
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var tx driver.Tx
	var err error
	// The transaction lives on ctx: database/sql rolls it back when ctx
	// ends, and the watch ends a commit or rollback blocked then.
	stop := c.watch(ctx)
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = c.Conn.Begin()
	}
	if err != nil {
		return nil, c.seen(cut(ctx, stop(), err))
	}
	return &txn{Tx: tx, c: c, ctx: ctx, stop: stop}, nil
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	stop, since := c.watch(ctx), c.sent()
	r, err := q.QueryContext(ctx, query, args)
	if err != nil {
		return nil, c.after(ctx, stop(), since, err)
	}
	// Rows are read after QueryContext returns: the watch lasts until
	// they are closed.
	return &rows{Rows: r, c: c, ctx: ctx, stop: stop}, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	stop, since := c.watch(ctx), c.sent()
	res, err := e.ExecContext(ctx, query, args)
	return res, c.after(ctx, stop(), since, err)
}

func (c *conn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		stop := c.watch(ctx)
		err := p.Ping(ctx)
		return c.seen(cut(ctx, stop(), err))
	}
	return nil
}

func (c *conn) ResetSession(ctx context.Context) error {
	if c.bad.Load() || (c.socks != nil && c.socks.idleDataOrClosed()) {
		c.bad.Store(true)
		return driver.ErrBadConn
	}
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if c.bad.Load() {
		return false
	}
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// Raw returns the driver's own connection, for (*sql.Conn).Raw callers
// that need it (pgx's *stdlib.Conn, say).
func (c *conn) Raw() driver.Conn { return c.Conn }

type txn struct {
	driver.Tx
	c    *conn
	ctx  context.Context
	stop func() bool
}

func (t *txn) Commit() error {
	since := t.c.sent()
	err := t.Tx.Commit()
	return t.c.after(t.ctx, t.stop(), since, err)
}

func (t *txn) Rollback() error {
	err := t.Tx.Rollback()
	return t.c.seen(cut(t.ctx, t.stop(), err))
}

type stmt struct {
	driver.Stmt
	c *conn
}

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	res, err := s.Stmt.Exec(args)
	return res, s.c.seen(err)
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	r, err := s.Stmt.Query(args)
	if err != nil {
		return nil, s.c.seen(err)
	}
	return &rows{Rows: r, c: s.c}, nil
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	e, ok := s.Stmt.(driver.StmtExecContext)
	if !ok {
		vals, err := values(args)
		if err != nil {
			return nil, err
		}
		return s.Exec(vals)
	}
	stop, since := s.c.watch(ctx), s.c.sent()
	res, err := e.ExecContext(ctx, args)
	return res, s.c.after(ctx, stop(), since, err)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := s.Stmt.(driver.StmtQueryContext)
	if !ok {
		vals, err := values(args)
		if err != nil {
			return nil, err
		}
		return s.Query(vals)
	}
	stop, since := s.c.watch(ctx), s.c.sent()
	r, err := q.QueryContext(ctx, args)
	if err != nil {
		return nil, s.c.after(ctx, stop(), since, err)
	}
	return &rows{Rows: r, c: s.c, ctx: ctx, stop: stop}, nil
}

func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return s.c.CheckNamedValue(nv)
}

func values(args []driver.NamedValue) ([]driver.Value, error) {
	out := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, fmt.Errorf("database: the driver does not support named parameters (%s)", a.Name)
		}
		out[i] = a.Value
	}
	return out, nil
}

// rows passes the driver's rows through, noting a read-only error that
// arrives with the first row (as an INSERT … RETURNING's does).
type rows struct {
	driver.Rows
	c    *conn
	ctx  context.Context
	stop func() bool // nil for rows of the driver's own Query
}

func (r *rows) Next(dest []driver.Value) error {
	err := r.Rows.Next(dest)
	if err != nil && err != io.EOF && r.ctx != nil && r.ctx.Err() != nil {
		err = fmt.Errorf("database: %w: the connection was closed to end the call (%w)", r.ctx.Err(), err)
	}
	return r.c.seen(err)
}

func (r *rows) Close() error {
	err := r.Rows.Close()
	if r.stop != nil {
		r.stop()
	}
	return err
}

func (r *rows) HasNextResultSet() bool {
	n, ok := r.Rows.(driver.RowsNextResultSet)
	return ok && n.HasNextResultSet()
}

func (r *rows) NextResultSet() error {
	if n, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return r.c.seen(n.NextResultSet())
	}
	return io.EOF
}

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *rows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *rows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *rows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
