package lockout

import (
	"fmt"
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
// control or invisible characters (Unicode Cc, Cf except ZWNJ and ZWJ,
// variation selectors and other default-ignorable code points) or more than
// [MaxEmailBytes] bytes. It does not check
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
	// Invisible characters would give one address many counters.
	if strings.IndexFunc(email, isInvisible) >= 0 {
		return "", &EmailError{Reason: "contains an invisible character"}
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

// isInvisible reports whether r is an invisible character with no place in
// an address: a format character (Cf: zero-width space, BOM, soft
// hyphen…), a variation selector or another default-ignorable code point.
// ZWNJ and ZWJ are allowed: IDNA2008 permits them in some scripts' labels.
func isInvisible(r rune) bool {
	if r == '\u200c' || r == '\u200d' {
		return false
	}
	return unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
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

// parseAddr parses an address with or without a port or zone (an IPv6
// address may be in brackets without a port, as some proxies write it),
// unmapping IPv4-mapped IPv6 and dropping the zone.
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
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

// operatorIP parses the IP an operator call names: an address, or a key as
// [Service.Status] shows it ("2001:db8:1:2::/64", "192.0.2.1"). Unlike the
// login calls, which count what does not parse as an unknown client, it
// returns an error wrapping [ErrInvalidIP] for anything that does not name
// exactly one key, so that a typo or a wider prefix never unlocks another
// row.
func (s *Service) operatorIP(op, ip string) (string, error) {
	if p, err := netip.ParsePrefix(strings.TrimSpace(ip)); err == nil {
		addr := p.Addr().Unmap()
		bits := 32
		if addr.Is6() {
			bits = min(s.policy.IPv6Prefix, 128)
		}
		// An IPv4-mapped prefix counts its bits past the 96 mapping ones.
		if got := p.Bits() - (p.Addr().BitLen() - addr.BitLen()); got != bits {
			return "", fmt.Errorf("lockout: %s: %q is a /%d; the policy counts clients by /%d: %w", op, ip, p.Bits(), bits, ErrInvalidIP)
		}
		ip = addr.String()
	}
	if n := s.normalizeIP(ip); n != nil {
		return *n, nil
	}
	return "", fmt.Errorf("lockout: %s: %q is not an IP address: %w", op, ip, ErrInvalidIP)
}
