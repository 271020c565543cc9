package lockout_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/klozd/api/internal/lockout"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	proxies := lockout.NewClientIP("10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.10")
	unix := lockout.NewClientIP(" UNIX ", "10.0.0.0/8")
	unixOnly := lockout.NewClientIP("unix")
	for _, tc := range []struct {
		name, remote string
		xff          []string
		c            *lockout.ClientIP
		want         string
	}{
		{"no proxy trusted: RemoteAddr", "198.51.100.7:1234", []string{"203.0.113.1"}, lockout.NewClientIP(), "198.51.100.7"},
		{"zero value trusts nobody", "198.51.100.7:1234", []string{"203.0.113.1"}, &lockout.ClientIP{}, "198.51.100.7"},
		{"untrusted peer: header ignored", "198.51.100.7:1234", []string{"203.0.113.1"}, proxies, "198.51.100.7"},
		{"trusted peer: right-most entry", "10.1.1.1:1234", []string{"203.0.113.1"}, proxies, "203.0.113.1"},
		{"spoofed left entries are skipped", "10.1.1.1:1234", []string{"1.1.1.1, 203.0.113.1"}, proxies, "203.0.113.1"},
		{"walks through trusted hops", "10.1.1.1:1234", []string{"1.1.1.1, 203.0.113.1, 192.0.2.10", "10.2.2.2"}, proxies, "203.0.113.1"},
		{"IPv6 and mapped entries", "[2001:db8:ffff::1]:443", []string{"::ffff:203.0.113.5"}, proxies, "203.0.113.5"},
		{"mapped peer is trusted as IPv4", "[::ffff:10.0.0.1]:443", []string{"2001:db8::5"}, proxies, "2001:db8::5"},
		{"garbage written by a trusted hop: unknown", "10.1.1.1:1234", []string{"203.0.113.1, bogus"}, proxies, ""},
		{"all hops trusted: left-most", "10.1.1.1:1234", []string{"10.3.3.3, 10.2.2.2"}, proxies, "10.3.3.3"},
		{"no header from a trusted peer", "10.1.1.1:1234", nil, proxies, "10.1.1.1"},
		{"bracketed IPv6 without a port", "10.1.1.1:1234", []string{"[2001:db8::7]"}, proxies, "2001:db8::7"},
		{"empty entries ignored", "10.1.1.1:1234", []string{"203.0.113.1,, "}, proxies, "203.0.113.1"},
		{"unparsable RemoteAddr: unknown", "@unix", nil, proxies, ""},
		{"unix peer, unix not trusted: unknown", "@", []string{"203.0.113.1"}, proxies, ""},
		{"unix peer, unix not trusted, empty: unknown", "", []string{"203.0.113.1"}, proxies, ""},
		{"trusted unix peer: right-most entry", "@", []string{"203.0.113.1"}, unix, "203.0.113.1"},
		{"trusted unnamed unix peer", "", []string{"203.0.113.1"}, unix, "203.0.113.1"},
		{"trusted unix peer with a path", "/run/proxy.sock", []string{"203.0.113.1"}, unix, "203.0.113.1"},
		{"trusted abstract unix peer", "@proxy", []string{"203.0.113.1"}, unix, "203.0.113.1"},
		{"trusted unix peer: spoofed left entries skipped", "@", []string{"1.1.1.1, 203.0.113.1"}, unix, "203.0.113.1"},
		{"trusted unix peer: walks through trusted hops", "@", []string{"1.1.1.1, 203.0.113.1, 10.2.2.2"}, unix, "203.0.113.1"},
		{"unix hops written by proxies are trusted", "@", []string{"203.0.113.1, unix:, 10.2.2.2, @"}, unix, "203.0.113.1"},
		{"trusted unix peer, all hops trusted: left-most address", "@", []string{"10.3.3.3, 10.2.2.2"}, unix, "10.3.3.3"},
		{"trusted unix peer without a header: unknown", "@", nil, unix, ""},
		{"trusted unix peer, only unix hops: unknown", "@", []string{"unix:"}, unix, ""},
		{"trusted unix peer, garbage: unknown", "@", []string{"203.0.113.1, bogus"}, unix, ""},
		{"unix trust does not trust TCP peers", "198.51.100.7:1234", []string{"203.0.113.1"}, unixOnly, "198.51.100.7"},
		{"unix trust does not cover other unparsable peers", "bogus", []string{"203.0.113.1"}, unix, ""},
		{"unix hops are not trusted without unix", "10.1.1.1:1234", []string{"203.0.113.1, unix:"}, proxies, ""},
	} {
		r := httptest.NewRequest("POST", "/login", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		assert.Equal(t, tc.want, tc.c.FromRequest(r), tc.name)
	}
}

func TestNewClientIPPanicsOnBadProxy(t *testing.T) {
	t.Parallel()
	assert.PanicsWithValue(t,
		`lockout: trusted proxy "10.0.0.0/33" is neither a prefix nor an address: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`,
		func() { lockout.NewClientIP("10.0.0.0/33") })
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.1.1.1:80", "203.0.113.1, 10.2.2.2")
	f.Add("198.51.100.7:1", "1.1.1.1")
	f.Add("[::ffff:10.0.0.1]:443", "::ffff:1.2.3.4,2001:db8::1%eth0")
	f.Add("", ",,,")
	f.Add("10.0.0.1", "2001:db8:1:2::1:80")
	f.Add("@", "203.0.113.1, unix:")
	f.Add("/run/p.sock", "@, 10.0.0.2")
	c := lockout.NewClientIP("10.0.0.0/8", "2001:db8::/32")
	cu := lockout.NewClientIP("10.0.0.0/8", "2001:db8::/32", "unix")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		got := c.FromRequest(r)
		viaUnix := cu.FromRequest(r)
		if _, err := netip.ParseAddr(lockout.NormalizeIP(remote, 128)); err == nil && !strings.Contains(xff, "unix:") &&
			!strings.Contains(xff, "@") && !strings.Contains(xff, "/") {
			assert.Equal(t, got, viaUnix, "trusting unix changes nothing for a peer with an address")
		}
		if viaUnix != "" {
			a, err := netip.ParseAddr(viaUnix)
			if assert.NoError(t, err, "the result is an address") {
				assert.Equal(t, a.String(), viaUnix, "canonical text")
			}
		}
		if got == "" {
			return
		}
		a, err := netip.ParseAddr(got)
		if !assert.NoError(t, err, "the result is an address") {
			return
		}
		assert.False(t, a.Is4In6(), "mapped addresses are unmapped")
		assert.Empty(t, a.Zone())
		assert.Equal(t, a.String(), got, "canonical text")
		if peer, err := netip.ParseAddr(lockout.NormalizeIP(remote, 128)); err == nil &&
			!netip.MustParsePrefix("10.0.0.0/8").Contains(peer) && !netip.MustParsePrefix("2001:db8::/32").Contains(peer) {
			assert.Equal(t, peer.String(), got, "an untrusted peer's headers are never read")
		}
		// The normalised key of the result is stable.
		assert.Equal(t, lockout.NormalizeIP(got, 64), lockout.NormalizeIP(lockout.NormalizeIP(got, 128), 64))
	})
}

func FuzzNormalizeIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::ffff:1.2.3.4", "2001:db8::1", "[2001:db8::1]:80", "fe80::1%eth0", "", "1.2.3.4:99999", "::"} {
		f.Add(s, uint8(64))
	}
	f.Fuzz(func(t *testing.T, in string, bits uint8) {
		prefix := int(bits)%128 + 1
		got := lockout.NormalizeIP(in, prefix)
		if got == "" {
			return
		}
		if p, err := netip.ParsePrefix(got); err == nil {
			assert.True(t, p.Addr().Is6() && !p.Addr().Is4In6(), "only IPv6 is grouped")
			assert.Equal(t, prefix, p.Bits())
			assert.Equal(t, p.Masked(), p, "masked")
			assert.Equal(t, p.String(), got, "canonical text")
			return
		}
		a, err := netip.ParseAddr(got)
		if assert.NoError(t, err, "an address or a prefix: %q", got) {
			assert.True(t, a.Is4() || prefix == 128, "single addresses are IPv4 or /128")
			assert.Equal(t, a.String(), got, "canonical text")
			assert.Equal(t, got, lockout.NormalizeIP(got, prefix), "idempotent")
		}
	})
}
