package database

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Driver names [Config.Driver] accepts.
const (
	// DriverPQ is github.com/lib/pq, the default, which this package
	// registers.
	DriverPQ = "postgres"
	// DriverPGX is github.com/jackc/pgx/v5/stdlib, which the program
	// registers by importing it.
	DriverPGX = "pgx"
)

// PgBouncerParam is the URL parameter that turns on pooler-safe mode, as
// Prisma's ?pgbouncer=true does: pgbouncer=true (or 1, t, yes... as
// strconv.ParseBool reads them). It is read by this package and not sent
// to the server. See [Open].
const PgBouncerParam = "pgbouncer"

// pgx's query exec modes that keep no named statement on the server.
var pgxPoolerSafeModes = map[string]bool{"cache_describe": true, "describe_exec": true, "exec": true, "simple_protocol": true}

// plan is what [OpenConfig] makes of a URL and a Config.
type plan struct {
	driver    string
	dsn       string
	pgbouncer bool
}

// DSN returns rawURL as [Open] hands it to lib/pq: timezone=UTC set,
// overriding any other time zone parameter however spelt; several hosts
// (postgres://u@h1:5432,h2:5433/db) moved to host= and port= parameters,
// which both drivers read, with target_session_attrs=read-write unless
// the URL says otherwise; sslmode=disable when every host is this machine
// and the URL sets no sslmode; and, with pgbouncer=true, that parameter
// replaced by binary_parameters=yes. Values are kept byte for byte (a
// space is sent as %20, never as '+'). It accepts postgres:// and
// postgresql:// URLs.
func DSN(rawURL string) (string, error) {
	p, err := makePlan(rawURL, Config{})
	return p.dsn, err
}

func makePlan(rawURL string, cfg Config) (plan, error) {
	p := plan{driver: cfg.Driver}
	if p.driver == "" {
		p.driver = DriverPQ
	}
	if p.driver != DriverPQ && p.driver != DriverPGX {
		return p, fmt.Errorf("database: Config.Driver is %q: use %q (lib/pq, the default) or %q (import github.com/jackc/pgx/v5/stdlib)", p.driver, DriverPQ, DriverPGX)
	}
	if !isPostgresURL(rawURL) {
		// Not echoed: a key=value connection string holds its password in
		// plain text.
		return p, errors.New("database: the database URL is not a postgres:// URL (postgres://user:password@host:5432/dbname)")
	}
	u, hosts, ports, err := parseURL(rawURL)
	if err != nil {
		return p, err
	}
	q := u.Query()
	if len(hosts) > 0 {
		if q.Has("host") || q.Has("port") {
			return p, errors.New("database: the URL names its hosts both before the path and in host= or port=: give them in one place")
		}
		q.Set("host", strings.Join(hosts, ","))
		q.Set("port", strings.Join(ports, ","))
	}
	if v, ok := lookupFold(q, PgBouncerParam); ok {
		if p.pgbouncer, err = strconv.ParseBool(v); err != nil {
			return p, fmt.Errorf("database: %s=%q: use %s=true or leave it out", PgBouncerParam, v, PgBouncerParam)
		}
		deleteFold(q, PgBouncerParam)
	}
	// lib/pq sends parameters in map order, so a "TimeZone" beside our
	// "timezone" would win at random: drop every spelling first.
	deleteFold(q, "timezone")
	q.Set("timezone", "UTC")
	if strings.Contains(q.Get("host"), ",") && !q.Has("target_session_attrs") {
		// The services write: a pool must not settle on a standby.
		q.Set("target_session_attrs", "read-write")
	}
	if q.Get("sslmode") == "" && allLocal(u, q) {
		q.Set("sslmode", "disable")
	}
	switch p.driver {
	case DriverPQ:
		if p.pgbouncer {
			// One round trip, one Sync: Parse, Bind and Execute of the
			// unnamed statement reach the same server connection, which
			// the pooler may change at every Sync.
			if v := q.Get("binary_parameters"); v != "" && v != "yes" {
				return p, fmt.Errorf("database: binary_parameters=%s contradicts %s=true, which needs binary_parameters=yes: remove it", v, PgBouncerParam)
			}
			q.Set("binary_parameters", "yes")
		}
	case DriverPGX:
		if p.pgbouncer {
			mode := q.Get("default_query_exec_mode")
			if mode == "" {
				q.Set("default_query_exec_mode", "cache_describe")
			} else if !pgxPoolerSafeModes[mode] {
				return p, fmt.Errorf("database: default_query_exec_mode=%s keeps named statements, which %s=true forbids: use cache_describe, describe_exec, exec or simple_protocol", mode, PgBouncerParam)
			}
		}
	}
	if cfg.ConnectTimeout > 0 {
		q.Set("connect_timeout", strconv.Itoa(max(1, int(cfg.ConnectTimeout.Seconds()))))
	}
	if !p.pgbouncer {
		// Through a pooler these would be refused as startup parameters;
		// there the connector checks the role's settings instead.
		if cfg.StatementTimeout > 0 {
			q.Set("statement_timeout", strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10))
		}
		if cfg.LockTimeout > 0 {
			q.Set("lock_timeout", strconv.FormatInt(cfg.LockTimeout.Milliseconds(), 10))
		}
	}
	// url.Values.Encode writes a space as '+', which pgx keeps as a '+':
	// %20 means a space to both drivers. Encode escapes a literal '+'.
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	p.dsn = u.String()
	return p, nil
}

// parseURL parses rawURL. A URL naming several hosts in its authority
// (h1:p1,h2:p2), which net/url refuses, is returned without them, and the
// hosts and their ports (5432 where none is given) separately.
func parseURL(rawURL string) (u *url.URL, hosts, ports []string, err error) {
	scheme, rest, _ := strings.Cut(rawURL, "://")
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	userinfo, hostlist := "", authority
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, hostlist = authority[:i+1], authority[i+1:]
	}
	if strings.Contains(hostlist, ",") {
		for _, hp := range strings.Split(hostlist, ",") {
			host, port := hp, "5432"
			if strings.HasPrefix(hp, "[") || strings.Count(hp, ":") == 1 {
				h, p, serr := net.SplitHostPort(hp)
				if serr != nil {
					if !strings.HasPrefix(hp, "[") {
						return nil, nil, nil, fmt.Errorf("database: parse URL: host %q: %w", hp, serr)
					}
					h = strings.Trim(hp, "[]") // [::1] without a port
				} else if p != "" {
					port = p
				}
				host = h
			}
			if host == "" {
				return nil, nil, nil, errors.New("database: parse URL: an empty host in the host list")
			}
			if _, perr := strconv.ParseUint(port, 10, 16); perr != nil {
				return nil, nil, nil, fmt.Errorf("database: parse URL: port %q of host %q is not a port number", port, host)
			}
			hosts, ports = append(hosts, host), append(ports, port)
		}
		rawURL = scheme + "://" + userinfo + rest[end:]
	}
	u, err = url.Parse(rawURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("database: parse URL: %w", ParseError(err))
	}
	return u, hosts, ports, nil
}

// allLocal reports whether every host the URL names is this machine, as
// the driver resolves it: TLS is off by default only where the driver
// really connects locally ($PGHOST may send a URL without a host
// elsewhere).
func allLocal(u *url.URL, q url.Values) bool {
	if h := q.Get("host"); strings.Contains(h, ",") {
		for _, h := range strings.Split(h, ",") {
			if !IsLocalHost(h) {
				return false
			}
		}
		return true
	}
	v := *u
	v.RawQuery = q.Encode()
	host, err := EffectiveHost(v.String())
	return err == nil && IsLocalHost(host)
}

func lookupFold(q url.Values, name string) (string, bool) {
	for k, vs := range q {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[len(vs)-1], true
		}
	}
	return "", false
}

func deleteFold(q url.Values, name string) {
	for k := range q {
		if strings.EqualFold(k, name) {
			delete(q, k)
		}
	}
}
