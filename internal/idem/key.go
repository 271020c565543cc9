package idem

import (
	"errors"
	"strings"
)

// MaxKeyLen is the longest key accepted, in bytes (Stripe's 255 characters).
const MaxKeyLen = 255

// Errors returned by [ParseKey]. The middleware answers each with 400.
var (
	// ErrKeyEmpty reports an empty key (an empty field or "").
	ErrKeyEmpty = errors.New("idem: idempotency key is empty; send 1 to 255 printable ASCII characters")
	// ErrKeyTooLong reports a key longer than [MaxKeyLen] bytes.
	ErrKeyTooLong = errors.New("idem: idempotency key is longer than 255 bytes; send a shorter key such as a UUID")
	// ErrKeyInvalid reports a key that is neither a valid sf-string nor a
	// bare token, such as a list of keys.
	ErrKeyInvalid = errors.New(`idem: idempotency key must be one bare token (letters, digits and !#$%&'*+-.^_` + "`" + `|~:/) or one sf-string of printable ASCII such as "8e03978e-40d5-43e8-bc93-6894a57f9324"`)
)

// ParseKey parses the value of an Idempotency-Key field. It accepts the
// form of draft-ietf-httpapi-idempotency-key-header, a Structured Field
// string (RFC 8941 §3.3.3: `"…"` with only \" and \\ as escapes, no
// parameters), and a bare token as most clients send it. Both forms name the
// same key: `"abc"` and `abc` parse to abc. A bare key is an sf-token's
// characters (RFC 8941 §3.3.4: tchar, ":" and "/"), except that it may also
// start with a digit, as UUIDs do; any other character, such as the comma
// and space of a list (`a2, b2`, which a proxy folds from two fields), a
// semicolon (parameters) or a quote, makes it invalid, as does anything
// after an sf-string's closing quote. A key with such characters can be
// sent as an sf-string. The key must be 1 to [MaxKeyLen] bytes of printable
// ASCII (0x20–0x7E); leading and trailing spaces and tabs of the field
// value are not part of it.
func ParseKey(v string) (string, error) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return "", ErrKeyEmpty
	}
	if v[0] != '"' {
		if len(v) > MaxKeyLen {
			return "", ErrKeyTooLong
		}
		for i := 0; i < len(v); i++ {
			if !tokenChar(v[i]) {
				return "", ErrKeyInvalid
			}
		}
		return v, nil
	}
	key, err := parseSFString(v)
	if err != nil {
		return "", err
	}
	switch {
	case key == "":
		return "", ErrKeyEmpty
	case len(key) > MaxKeyLen:
		return "", ErrKeyTooLong
	}
	return key, nil
}

// parseSFString decodes v, which starts with a double quote, as a whole
// sf-string. It does not allocate when the string has no escapes.
func parseSFString(v string) (string, error) {
	if len(v) > 2*MaxKeyLen+2 {
		// Even fully escaped, the key would be too long: don't scan it.
		return "", ErrKeyTooLong
	}
	var b []byte // nil until the first escape
	for i := 1; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			if i+1 >= len(v) || (v[i+1] != '"' && v[i+1] != '\\') {
				return "", ErrKeyInvalid
			}
			if b == nil {
				b = append(make([]byte, 0, len(v)), v[1:i]...)
			}
			i++
			b = append(b, v[i])
		case c == '"':
			if i != len(v)-1 {
				return "", ErrKeyInvalid // parameters or trailing bytes
			}
			if b == nil {
				return v[1:i], nil
			}
			return string(b), nil
		case !printable(c):
			return "", ErrKeyInvalid
		default:
			if b != nil {
				b = append(b, c)
			}
		}
	}
	return "", ErrKeyInvalid // no closing quote
}

func printable(c byte) bool { return c >= 0x20 && c <= 0x7e }

// tokenChar reports whether c may appear in a bare key: an sf-token's
// characters, tchar (RFC 9110 §5.6.2), ":" and "/".
func tokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~:/", c) >= 0
}
