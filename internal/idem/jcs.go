package idem

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// errNotCanonical reports valid JSON that RFC 8785 cannot canonicalise
// without making distinct payloads alike (see [Fingerprint]): it is hashed
// byte for byte, never refused.
var errNotCanonical = errors.New("idem: JSON value has no faithful canonical form")

// maxJSONDepth bounds the nesting canonicalJSON follows.
const maxJSONDepth = 10000

// canonicalJSON returns the RFC 8785 (JCS) form of the single JSON value
// in data. It fails with an error wrapping [ErrBodyInvalid] for data that
// is not one JSON value of valid UTF-8 or repeats a member name, and with
// errNotCanonical for valid JSON that has no faithful canonical form.
func canonicalJSON(data []byte) ([]byte, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrBodyInvalid)
	}
	p := jcsParser{dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	out, err := p.value(make([]byte, 0, len(data)), 0)
	if errors.Is(err, errNotCanonical) && !json.Valid(data) {
		// Parsing stopped early, at a number or depth, in invalid JSON.
		return nil, fmt.Errorf("%w: %w", ErrBodyInvalid, json.Unmarshal(data, new(any)))
	}
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: more data after the value", ErrBodyInvalid)
	}
	if escapesLoneSurrogate(data) {
		// Decoding folded each into U+FFFD. Checked last: on invalid JSON
		// the scan means nothing.
		return nil, errNotCanonical
	}
	return out, nil
}

type jcsParser struct{ dec *json.Decoder }

func (p *jcsParser) token() (json.Token, error) {
	t, err := p.dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBodyInvalid, err)
	}
	return t, nil
}

func (p *jcsParser) value(dst []byte, depth int) ([]byte, error) {
	if depth > maxJSONDepth {
		return nil, errNotCanonical
	}
	t, err := p.token()
	if err != nil {
		return nil, err
	}
	switch t := t.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, t), nil
	case string:
		return appendJCSString(dst, t), nil
	case json.Number:
		f, err := jcsNumber(string(t))
		if err != nil {
			return nil, err
		}
		return appendJCSNumber(dst, f), nil
	case json.Delim:
		switch t {
		case '[':
			dst = append(dst, '[')
			for i := 0; p.dec.More(); i++ {
				if i > 0 {
					dst = append(dst, ',')
				}
				if dst, err = p.value(dst, depth+1); err != nil {
					return nil, err
				}
			}
			if _, err := p.token(); err != nil { // ']'
				return nil, err
			}
			return append(dst, ']'), nil
		case '{':
			return p.object(dst, depth)
		}
	}
	return nil, fmt.Errorf("%w: unexpected %v", ErrBodyInvalid, t)
}

func (p *jcsParser) object(dst []byte, depth int) ([]byte, error) {
	type member struct {
		name  string
		units []uint16 // the name in UTF-16, JCS's sort order
		value []byte
	}
	var members []member
	for p.dec.More() {
		t, err := p.token()
		if err != nil {
			return nil, err
		}
		name, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf("%w: member name %v", ErrBodyInvalid, t)
		}
		v, err := p.value(nil, depth+1)
		if err != nil {
			return nil, err
		}
		members = append(members, member{name, utf16.Encode([]rune(name)), v})
	}
	if _, err := p.token(); err != nil { // '}'
		return nil, err
	}
	slices.SortFunc(members, func(a, b member) int { return slices.Compare(a.units, b.units) })
	dst = append(dst, '{')
	for i, m := range members {
		if i > 0 {
			if members[i-1].name == m.name {
				return nil, fmt.Errorf("%w: member %q repeated", ErrBodyInvalid, m.name)
			}
			dst = append(dst, ',')
		}
		dst = appendJCSString(dst, m.name)
		dst = append(dst, ':')
		dst = append(dst, m.value...)
	}
	return append(dst, '}'), nil
}

// twoTo53 is 2^53: every integer of smaller magnitude is a double exactly.
const twoTo53 = 1 << 53

// jcsNumber reads a JSON number as RFC 8785 does, as the nearest IEEE 754
// double. It fails with errNotCanonical for a number beyond the doubles'
// range, and for an integer literal (no fraction, no exponent) that the
// double does not hold exactly: an integer decoder reads it exactly, so
// folding it into its neighbours would make distinct requests alike.
func jcsNumber(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, errNotCanonical
	}
	if math.Abs(f) >= twoTo53 && !strings.ContainsAny(s, ".eE") {
		exact, ok := new(big.Int).SetString(s, 10)
		held, _ := new(big.Float).SetFloat64(f).Int(nil)
		if !ok || exact.Cmp(held) != 0 {
			return 0, errNotCanonical
		}
	}
	return f, nil
}

// appendJCSNumber appends f as ECMAScript's Number.prototype.toString
// (ECMA-262 Number::toString, radix 10) writes it, as RFC 8785 §3.2.2.3
// requires: the shortest digits that read back as f, in plain notation for
// decimal exponents from -6 to 20 and in exponent notation ("1e+21",
// "1.5e-7") beyond. f is finite.
func appendJCSNumber(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0') // -0 too
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// 'e' with the shortest precision: "d.ddde±XX" or "de±XX".
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	i := bytes.IndexByte(e, 'e')
	exp, _ := strconv.Atoi(string(e[i+1:]))
	digits := e[:i]
	if len(digits) > 1 {
		digits = append([]byte{digits[0]}, digits[2:]...) // drop the point
	}
	k, n := len(digits), exp+1 // f = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}

// appendJCSString appends s as RFC 8785 §3.2.2.2 writes a string (as
// ECMAScript's JSON.stringify does): the quote and the backslash escaped,
// \b \t \n \f \r for those controls, \u00xx in lower case for the other
// controls, every other character as itself. s is valid UTF-8.
func appendJCSString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			} else {
				dst = append(dst, c) // UTF-8 passes through byte by byte
			}
		}
	}
	return append(dst, '"')
}
