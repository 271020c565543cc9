package lockout

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP takes the client address from a request without trusting
// headers a client can forge, as chi's client_ip.go does: it uses
// RemoteAddr, unless RemoteAddr is one of the trusted proxies, in which
// case it walks X-Forwarded-For from the right, skipping trusted proxies,
// and takes the first address that is not one. Entries left of that one
// were written by the client and are never looked at. Build one with
// [NewClientIP]; the zero value trusts no proxy.
type ClientIP struct {
	trusted []netip.Prefix
	unix    bool
}

// NewClientIP returns a ClientIP trusting the given proxies, each a prefix
// ("10.0.0.0/8", "fd00::/8") or a single address, or "unix" for a peer on
// a unix socket (a proxy on the same host in front of a server listening
// on one; RemoteAddr is then "", "@" or a path). It panics on an entry
// that does not parse, as configuration is resolved once at start-up.
func NewClientIP(trustedProxies ...string) *ClientIP {
	c := &ClientIP{}
	for _, s := range trustedProxies {
		if strings.EqualFold(strings.TrimSpace(s), "unix") {
			c.unix = true
			continue
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, err2 := netip.ParseAddr(strings.TrimSpace(s))
			if err2 != nil {
				panic(fmt.Sprintf("lockout: trusted proxy %q is neither a prefix nor an address: %v", s, err))
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		c.trusted = append(c.trusted, p.Masked())
	}
	return c
}

// FromRequest returns the client address of r in canonical text, or ""
// when it cannot be told (the service then counts the attempt as from an
// unknown client). Pass the result to [Service.Check] and friends, which
// group IPv6 addresses by prefix themselves.
//
// A unix-socket peer has no address: its X-Forwarded-For is read when
// "unix" is trusted, and the client is unknown otherwise, or when no entry
// names an address. Under a trusted "unix", entries a proxy wrote for its
// own unix-socket peer ("unix:", as nginx writes it, "@", a path) are
// trusted hops too.
func (c *ClientIP) FromRequest(r *http.Request) string {
	var last netip.Addr // the nearest hop to the client so far
	if remote, ok := parseAddr(r.RemoteAddr); ok {
		if !c.isTrusted(remote) {
			return remote.String()
		}
		last = remote
	} else if !c.trustsUnix(r.RemoteAddr) {
		return ""
	}
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		entries := strings.Split(values[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			if strings.TrimSpace(entries[j]) == "" {
				continue
			}
			a, ok := parseAddr(entries[j])
			if !ok && c.trustsUnix(strings.TrimSpace(entries[j])) {
				continue
			}
			if !ok {
				// A trusted proxy passed on garbage: the client is unknown.
				return ""
			}
			if !c.isTrusted(a) {
				return a.String()
			}
			last = a
		}
	}
	// Every hop is a trusted proxy: the left-most is the nearest to the client.
	if !last.IsValid() {
		return "" // only unix-socket hops
	}
	return last.String()
}

// trustsUnix reports whether unix-socket peers are trusted and s is how
// one is written: "" or "@" (an unnamed socket), "@name" (Linux's
// abstract namespace), an absolute path, or "unix:…".
func (c *ClientIP) trustsUnix(s string) bool {
	if c == nil || !c.unix {
		return false
	}
	return s == "" || s[0] == '@' || s[0] == '/' || strings.HasPrefix(s, "unix:")
}

func (c *ClientIP) isTrusted(a netip.Addr) bool {
	if c == nil {
		return false
	}
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
