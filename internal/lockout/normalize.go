package lockout

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/secure/bidirule"
	"golang.org/x/text/secure/precis"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/bidi"
	"golang.org/x/text/unicode/norm"
)

// MaxEmailBytes is the longest normalised email accepted (RFC 3696 errata).
const MaxEmailBytes = 320

// NormalizeEmail returns the key an email is counted under, so that every
// spelling a user table could match to one account shares one counter
// ("Ann@X.org ", "ａｎｎ@x.org" and "ann@x.org." are one key). The address
// is trimmed and split at its last "@":
//
//   - the local part is prepared with the PRECIS IdentifierClass (RFC 8264)
//     as in UsernameCaseMapped (RFC 8265): width folding, NFC and the Bidi
//     Rule, but with full Unicode case folding in place of lower-casing
//     (as RFC 7613 had it), so "ß" counts as "ss", the ligature "ﬀ" as
//     "ff" and "ſ" as "s"; and the dotless "ı" counts as "i", as matchers
//     that compare upper-cased text find it. Compatibility characters
//     that survive the folding (circled letters…), symbols, spaces, and
//     ZWJ or ZWNJ outside the scripts that need them are refused;
//   - the domain is prepared label by label with the same class but NFKC,
//     which maps compatibility characters as UTS #46 does ("ⓔ" is "e"),
//     the IDNA label separators ("。", "．") are dots, and final root dots
//     are dropped. A-labels ("xn--…") are not decoded: "ann@xn--bcher-kva.de"
//     and "ann@bücher.de" are two keys.
//
// It returns an [*EmailError] for an empty address, invalid UTF-8, control
// or invisible characters (Unicode Cc, Cf, variation selectors and other
// default-ignorable code points, ZWNJ and ZWJ where PRECIS does not allow
// them), what the profile disallows, or a key of more than [MaxEmailBytes]
// bytes. It does not check that the address is deliverable: the counter
// must not depend on whether an account exists. Provider-specific rules
// (dots and "+tags" at some mail hosts) are not applied.
func NormalizeEmail(email string) (string, error) {
	if !utf8.ValidString(email) {
		return "", &EmailError{Reason: "not valid UTF-8"}
	}
	email = strings.TrimSpace(email)
	if len(email) > 4*MaxEmailBytes {
		// Cheap early exit before folding a huge input: folding shrinks
		// a character at most from 3 bytes (fullwidth) to 1.
		return "", &EmailError{Reason: "longer than 320 bytes"}
	}
	if strings.IndexFunc(email, unicode.IsControl) >= 0 {
		return "", &EmailError{Reason: "contains a control character"}
	}
	// Invisible characters would give one address many counters.
	if strings.IndexFunc(email, isInvisible) >= 0 {
		return "", &EmailError{Reason: "contains an invisible character"}
	}
	if email == "" {
		return "", &EmailError{Reason: "empty"}
	}
	email = atSigns.Replace(email)
	local, domain, hasDomain := email, "", false
	if i := strings.LastIndexByte(email, '@'); i >= 0 {
		local, domain, hasDomain = email[:i], email[i+1:], true
	}
	s, err := prepare(localProfile, local)
	if err != nil {
		return "", err
	}
	if hasDomain {
		d, err := foldDomain(domain)
		if err != nil {
			return "", err
		}
		s += "@" + d
	}
	switch {
	case s == "":
		return "", &EmailError{Reason: "empty"}
	case len(s) > MaxEmailBytes:
		return "", &EmailError{Reason: "longer than 320 bytes"}
	}
	return s, nil
}

var (
	// localProfile prepares a local part: UsernameCaseMapped with full
	// case folding, and ı mapped to i first (case folding leaves it).
	localProfile = precis.NewIdentifier(
		precis.FoldWidth,
		precis.AdditionalMapping(func() transform.Transformer {
			return runes.Map(func(r rune) rune {
				if r == 'ı' {
					return 'i'
				}
				return r
			})
		}),
		precis.FoldCase(),
		precis.Norm(norm.NFC),
	)
	// labelProfile prepares one domain label: NFKC both before case
	// folding (so that a compatibility character that decomposes to
	// capitals, such as ㎒, is folded too) and after it.
	labelProfile = precis.NewIdentifier(
		precis.FoldWidth,
		precis.AdditionalMapping(func() transform.Transformer { return norm.NFKC }),
		precis.FoldCase(),
		precis.Norm(norm.NFKC),
	)
	// atSigns are the wide and small forms of "@", which width folding
	// and NFKC would turn into the separator after the split.
	atSigns = strings.NewReplacer("\uff20", "@", "\ufe6b", "@")
	// labelDots are the separators IDNA reads as ".".
	labelDots = strings.NewReplacer("\u3002", ".", "\uff0e", ".", "\uff61", ".")
)

// foldDomain prepares a domain label by label; the Bidi Rule applies to
// each label (RFC 5893), not to the whole address.
func foldDomain(domain string) (string, error) {
	domain = labelDots.Replace(domain)
	domain = strings.TrimRight(domain, ".")
	labels := strings.Split(domain, ".")
	for i, l := range labels {
		f, err := prepare(labelProfile, l)
		if err != nil {
			return "", err
		}
		if strings.Contains(f, ".") {
			return "", &EmailError{Reason: "contains a disallowed character"}
		}
		labels[i] = f
	}
	return strings.Join(labels, "."), nil
}

// prepare applies p to s and then the Bidi Rule (RFC 5893) when the
// result holds a right-to-left character. The profiles leave the rule out
// because x/text applies it to every non-ASCII input, also one that folds
// to ASCII, but never to ASCII: "１ann" would be refused where "1ann" is
// not, though both are one key.
func prepare(p *precis.Profile, s string) (string, error) {
	out, err := p.String(s)
	if err != nil {
		return "", precisError(err)
	}
	if strings.IndexFunc(out, isRTL) >= 0 && !bidirule.ValidString(out) {
		return "", &EmailError{Reason: "fails the Bidi Rule"}
	}
	return out, nil
}

// isRTL reports whether r makes a string a bidi label (RFC 5893 §1.4).
func isRTL(r rune) bool {
	p, _ := bidi.LookupRune(r)
	switch p.Class() {
	case bidi.R, bidi.AL, bidi.AN:
		return true
	}
	return false
}

// precisError turns a PRECIS refusal into an [*EmailError].
func precisError(err error) *EmailError {
	switch {
	case errors.Is(err, bidirule.ErrInvalid):
		return &EmailError{Reason: "fails the Bidi Rule"}
	case strings.Contains(err.Error(), "contextual rule"):
		return &EmailError{Reason: "contains a joiner or other character out of context"}
	default:
		return &EmailError{Reason: "contains a disallowed character"}
	}
}

// isInvisible reports whether r is an invisible character with no place in
// an address: a format character (Cf: zero-width space, BOM, soft
// hyphen…), a variation selector or another default-ignorable code point.
// ZWNJ and ZWJ are left to the PRECIS context rules, which allow them only
// where some scripts need them.
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
