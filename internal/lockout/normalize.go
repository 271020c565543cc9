package lockout

import (
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxEmailBytes is the longest normalised email accepted (RFC 3696 errata).
const MaxEmailBytes = 320

// NormalizeEmail returns the key an email is counted under: trimmed,
// lower-cased and in Unicode NFC, so that "Ann@X.org " and "ann@x.org" share
// a counter. It returns an [*EmailError] for an empty address, invalid UTF-8,
// control characters or more than [MaxEmailBytes] bytes. It does not check
// that the address is deliverable: the counter must not depend on whether
// an account exists.
func NormalizeEmail(email string) (string, error) {
	if !utf8.ValidString(email) {
		return "", &EmailError{Reason: "not valid UTF-8"}
	}
	if len(email) > 4*MaxEmailBytes {
		// Cheap early exit before normalising a huge input.
		return "", &EmailError{Reason: "longer than 320 bytes"}
	}
	email = strings.TrimSpace(email)
	if strings.IndexFunc(email, unicode.IsControl) >= 0 {
		return "", &EmailError{Reason: "contains a control character"}
	}
	// NFC before and after lower-casing: case mapping can leave a sequence
	// NFC would compose, and the result must be a fixed point.
	s := norm.NFC.String(strings.ToLower(norm.NFC.String(email)))
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", &EmailError{Reason: "empty"}
	case len(s) > MaxEmailBytes:
		return "", &EmailError{Reason: "longer than 320 bytes"}
	}
	return s, nil
}

// NormalizeIP returns the key a client address is counted under, or "" when
// ip is empty or does not parse (an unknown client, stored as NULL). It
// accepts an address with or without a port or zone. IPv4-mapped IPv6
// addresses count as their IPv4 address; other IPv6 addresses are grouped by
// their first v6Prefix bits and written as a prefix ("2001:db8:1:2::/64"),
// unless v6Prefix is 128. IPv4 addresses are written as is.
func NormalizeIP(ip string, v6Prefix int) string {
	addr, ok := parseAddr(ip)
	if !ok {
		return ""
	}
	if addr.Is4() || v6Prefix >= 128 {
		return addr.String()
	}
	p, err := addr.Prefix(v6Prefix)
	if err != nil {
		return ""
	}
	return p.String()
}

// parseAddr parses an address with or without a port or zone, unmapping
// IPv4-mapped IPv6 and dropping the zone.
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	addr, err := netip.ParseAddr(s)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(s)
		if err2 != nil {
			return netip.Addr{}, false
		}
		addr = ap.Addr()
	}
	return addr.Unmap().WithZone(""), true
}

// normalizeIP is [NormalizeIP] under the policy's prefix, as the nullable
// parameter the SQL takes.
func (s *Service) normalizeIP(ip string) *string {
	if n := NormalizeIP(ip, s.policy.IPv6Prefix); n != "" {
		return &n
	}
	return nil
}
