package idem

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"slices"
	"strings"
	"unicode/utf8"
)

// Domain separators: a change of encoding changes every hash instead of
// silently colliding with the previous version's.
const (
	fingerprintVersion = "idem/fingerprint/v2"
	keyVersion         = "idem/key/v1"
)

// Fingerprint returns the request hash stored in "requestHash": the hex
// SHA-256 of a length-framed encoding of method, route, target, tenant and
// body. Target is what the route does not say about the request: the
// middleware passes the escaped path and raw query (r.URL.RequestURI()), so
// a key reused on /accounts/2 after /accounts/1, or with ?amount=500 after
// ?amount=5, is a different request even when both share the route pattern
// "POST /accounts/{id}". A caller of [Store.Begin] whose route names the
// whole operation passes "". Each field is preceded by its length, so
// ("ab", "c") and ("a", "bc") never hash alike. When contentType is a JSON media type (application/json,
// anything +json) or empty, and the body is one valid JSON value, the body
// is hashed in canonical form: object keys sorted, insignificant whitespace
// removed, strings re-escaped minimally; numbers keep their text (1 and 1.0
// differ) so two payloads a decoder could read differently never share a
// hash. A duplicate object key keeps its last value, as encoding/json does.
// A body that is not valid UTF-8, or escapes a lone UTF-16 surrogate
// ("\ud800"), is not canonicalised, as decoding would fold each such byte
// or escape into U+FFFD and make distinct payloads alike. Those and other
// bodies are hashed byte for byte, tagged so that they never collide with a
// canonical JSON one.
func Fingerprint(method, route, target, tenant, contentType string, body []byte) string {
	buf := make([]byte, 0, 72+len(fingerprintVersion)+len(method)+len(route)+len(target)+len(tenant)+len(body))
	buf = appendFrame(buf, fingerprintVersion)
	buf = appendFrame(buf, method)
	buf = appendFrame(buf, route)
	buf = appendFrame(buf, target)
	buf = appendFrame(buf, tenant)
	if isJSONType(contentType) && utf8.Valid(body) && !escapesLoneSurrogate(body) {
		if c, err := canonicalJSON(body); err == nil {
			buf = appendFrame(buf, "json")
			buf = appendFrame(buf, c)
			return hashHex(buf)
		}
	}
	buf = appendFrame(buf, "raw")
	buf = appendFrame(buf, body)
	return hashHex(buf)
}

// storedKey is the value of the "key" column: the hex SHA-256 of the
// length-framed tenant and client key. Keys of two tenants never share a
// row, the raw key never reaches the database or the logs, and the indexed
// value has a fixed length of 64 bytes.
func storedKey(tenant, key string) string {
	buf := make([]byte, 0, 24+len(keyVersion)+len(tenant)+len(key))
	buf = appendFrame(buf, keyVersion)
	buf = appendFrame(buf, tenant)
	buf = appendFrame(buf, key)
	return hashHex(buf)
}

// appendFrame appends s preceded by its length as 8 bytes, big-endian.
func appendFrame[T string | []byte](dst []byte, s T) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(s)))
	return append(dst, s...)
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func isJSONType(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

var errTrailingData = errors.New("idem: JSON value followed by more data")

// canonicalJSON returns the canonical form of the single JSON value in data
// (see [Fingerprint]). It fails on invalid JSON or trailing data.
func canonicalJSON(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailingData
	}
	return appendCanonical(make([]byte, 0, len(data)), v), nil
}

func appendCanonical(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		if v {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case json.Number:
		return append(dst, v...)
	case string:
		return appendString(dst, v)
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonical(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendCanonical(dst, v[k])
		}
		return append(dst, '}')
	}
	panic("idem: unexpected JSON value type") // unreachable: Decode into any yields only the types above
}

// appendString writes s as a JSON string escaping only what JSON requires:
// the quote, the backslash and control characters. s is valid UTF-8: the
// decoder replaced invalid UTF-8 and lone surrogate escapes with U+FFFD
// (which is why [Fingerprint] does not canonicalise a body holding them).
func appendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			dst = utf8.AppendRune(dst, r)
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
		i++
	}
	return append(dst, '"')
}

// escapesLoneSurrogate reports whether data, JSON text, holds a \u escape
// of a UTF-16 surrogate that is not part of a high-low pair. Outside
// strings, valid JSON has no backslash, so every backslash starts an
// escape; on invalid JSON the answer does not matter.
func escapesLoneSurrogate(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if i >= len(data) || data[i] != 'u' {
			continue
		}
		r, ok := hex4(data[i+1:])
		if !ok {
			continue
		}
		i += 4 // the last hex digit
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return true // a low surrogate without its high one
		case r >= 0xd800 && r <= 0xdbff:
			if i+2 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
				if lo, ok := hex4(data[i+3:]); ok && lo >= 0xdc00 && lo <= 0xdfff {
					i += 6
					continue
				}
			}
			return true // a high surrogate without its low one
		}
	}
	return false
}

// hex4 decodes the four hex digits that b starts with.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
