package database

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lib/pq"
)

// EffectiveHost returns the server lib/pq connects to for rawURL, resolved
// as the driver resolves it, environment included: the URL's host, else
// its host= parameter, else $PGHOST (or the host of a pg_service.conf
// entry), else localhost; when a hostaddr= parameter or $PGHOSTADDR is set,
// that is the address dialled and is what is returned. The result is
// "host:port" for TCP and the socket's path for a Unix socket
// ("/var/run/postgresql/.s.PGSQL.5432"). A URL naming several hosts is an
// error, as is one the driver cannot parse; errors never hold the URL.
func EffectiveHost(rawURL string) (string, error) {
	cfg, err := pq.NewConfig(rawURL)
	if err != nil {
		return "", fmt.Errorf("database: resolve host: %w", ParseError(err))
	}
	if len(cfg.Multi) > 0 {
		return "", fmt.Errorf("database: the URL names %d hosts: give exactly one", len(cfg.Multi)+1)
	}
	port := strconv.Itoa(int(cfg.Port))
	if cfg.Hostaddr.IsValid() {
		return net.JoinHostPort(cfg.Hostaddr.String(), port), nil
	}
	if filepath.IsAbs(cfg.Host) || strings.HasPrefix(cfg.Host, "@") {
		return filepath.Join(cfg.Host, ".s.PGSQL."+port), nil
	}
	return net.JoinHostPort(cfg.Host, port), nil
}

// IsLocalHost reports whether host, as [EffectiveHost] returns it or as a
// bare host name or address, is this machine: localhost, a loopback
// address, or a Unix socket (an absolute path, or "@" for the abstract
// namespace). The empty host is the driver's default, localhost.
func IsLocalHost(host string) bool {
	if filepath.IsAbs(host) || strings.HasPrefix(host, "@") {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}
