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
	fingerprintVersion   = "idem/fingerprint/v3"
	fingerprintVersionV2 = "idem/fingerprint/v2"
	keyVersion           = "idem/key/v1"
)

// ErrBodyInvalid reports a request body with a JSON media type that is
// not one JSON value of valid UTF-8, or whose object repeats a member name
// (RFC 8785 §3.1, and RFC 8259 §4: receivers disagree on which value
// counts). The middleware answers it with 400 before the store is asked.
var ErrBodyInvalid = errors.New("idem: request body is not valid JSON")

// Fingerprint returns the request hash stored in "requestHash": the hex
// SHA-256 of a length-framed encoding of method, route, target, tenant and
// body. Target is what the route does not say about the request: the
// middleware passes the escaped path and raw query (r.URL.RequestURI()), so
// a key reused on /accounts/2 after /accounts/1, or with ?amount=500 after
// ?amount=5, is a different request even when both share the route pattern
// "POST /accounts/{id}". A caller of [Store.Begin] whose route names the
// whole operation passes "". Each field is preceded by its length, so
// ("ab", "c") and ("a", "bc") never hash alike.
//
// When contentType is a JSON media type (application/json, anything
// +json) or empty, and the body is one valid JSON value, the body is hashed
// in its RFC 8785 (JCS) canonical form: members sorted by their names'
// UTF-16 code units, insignificant whitespace removed, strings escaped as
// ECMAScript's JSON.stringify does, and numbers compared by value: each is
// read as an IEEE 754 double and written as ECMAScript's
// Number.prototype.toString writes it, so 1, 1.0 and 1e0 are one number.
// Some valid JSON cannot be canonicalised without making distinct payloads
// alike, and is hashed byte for byte instead: a body that escapes a lone
// UTF-16 surrogate ("\ud800", which decoding folds into U+FFFD), an integer
// written without fraction or exponent that a double cannot hold exactly
// (beyond ±2^53, such as 12345678901234567891, which integer decoders read
// exactly), a number beyond the range of a double, or nesting deeper than
// 10000. Invalid JSON, and an object that repeats a member name, is hashed
// byte for byte too; [Middleware] refuses those with 400 instead when the
// content type is a JSON one (see [ErrBodyInvalid]). A body hashed byte for
// byte is tagged so that it never collides with a canonical one.
func Fingerprint(method, route, target, tenant, contentType string, body []byte) string {
	fp, _ := fingerprint(method, route, target, tenant, contentType, body)
	return fp
}

// fingerprint is [Fingerprint], which also returns an error wrapping
// [ErrBodyInvalid] for a body that a JSON content type says is JSON and is
// not (the hash is then of the raw bytes).
func fingerprint(method, route, target, tenant, contentType string, body []byte) (string, error) {
	buf := appendHead(fingerprintVersion, method, route, target, tenant, len(body))
	var invalid error
	if len(body) > 0 && isJSONType(contentType) {
		c, err := canonicalJSON(body)
		if err == nil {
			buf = appendFrame(buf, "json")
			buf = appendFrame(buf, c)
			return hashHex(buf), nil
		}
		if errors.Is(err, ErrBodyInvalid) && contentType != "" {
			invalid = err
		}
	}
	buf = appendFrame(buf, "raw")
	buf = appendFrame(buf, body)
	return hashHex(buf), invalid
}

// fingerprintV2 is the request hash of fingerprint version 2, which
// hashed numbers as written and kept a duplicate member's last value. A
// record claimed or completed before version 3 was deployed holds it, so
// the middleware compares it too when the version 3 hash does not match,
// until such records have expired ([StoreConfig.TTL] after the deploy).
func fingerprintV2(method, route, target, tenant, contentType string, body []byte) string {
	buf := appendHead(fingerprintVersionV2, method, route, target, tenant, len(body))
	if isJSONType(contentType) && utf8.Valid(body) && !escapesLoneSurrogate(body) {
		if c, err := canonicalJSONv2(body); err == nil {
			buf = appendFrame(buf, "json")
			buf = appendFrame(buf, c)
			return hashHex(buf)
		}
	}
	buf = appendFrame(buf, "raw")
	buf = appendFrame(buf, body)
	return hashHex(buf)
}

// appendHead starts a fingerprint's encoding: the version and the framed
// fields before the body.
func appendHead(version, method, route, target, tenant string, bodyLen int) []byte {
	buf := make([]byte, 0, 72+len(version)+len(method)+len(route)+len(target)+len(tenant)+bodyLen)
	buf = appendFrame(buf, version)
	buf = appendFrame(buf, method)
	buf = appendFrame(buf, route)
	buf = appendFrame(buf, target)
	return appendFrame(buf, tenant)
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

// canonicalJSONv2 returns the canonical form of version 2 of the
// fingerprint: object keys sorted by UTF-8 bytes, numbers as written, a
// duplicate key keeping its last value. It fails on invalid JSON or
// trailing data. It is kept to match records made before version 3 (see
// [fingerprintV2]).
func canonicalJSONv2(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailingData
	}
	return appendCanonicalV2(make([]byte, 0, len(data)), v), nil
}

// appendCanonicalV2 appends v, as decoded with UseNumber, in version 2's
// canonical form.
func appendCanonicalV2(dst []byte, v any) []byte {
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
		return appendStringV2(dst, v)
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonicalV2(dst, e)
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
			dst = appendStringV2(dst, k)
			dst = append(dst, ':')
			dst = appendCanonicalV2(dst, v[k])
		}
		return append(dst, '}')
	}
	panic("idem: unexpected JSON value type") // unreachable: Decode into any yields only the types above
}

// appendStringV2 writes s as a JSON string escaping only what JSON requires:
// the quote, the backslash and control characters. s is valid UTF-8: the
// decoder replaced invalid UTF-8 and lone surrogate escapes with U+FFFD
// (which is why [Fingerprint] does not canonicalise a body holding them).
func appendStringV2(dst []byte, s string) []byte {
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
