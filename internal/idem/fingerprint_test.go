package idem

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFingerprintCanonicalJSON(t *testing.T) {
	t.Parallel()
	fp := func(ct, body string) string {
		return Fingerprint("POST", "POST /orders", "/orders", "org", ct, []byte(body))
	}

	base := fp("application/json", `{"amount":100,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`)
	variants := []struct{ ct, body string }{
		{"application/json", "{\n  \"currency\": \"EUR\",\n  \"amount\": 100,\n  \"meta\": null,\n  \"items\": [ {\"qty\":1,\"sku\":\"a\"}, {\"qty\":2,\"sku\":\"b\"} ]\n}\n"},
		{"application/json; charset=utf-8", `{"meta":null,"items":[{"qty":1,"sku":"a"},{"sku":"b","qty":2}],"currency":"EUR","amount":100}`},
		{"application/merge-patch+json", ` {"amount":100,"currency":"\u0045UR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null} `},
		{"", `{"amount":100,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`},
		{"application/json", `{"amount":100.0,"currency":"EUR","items":[{"sku":"a","qty":1e0},{"sku":"b","qty":0.2e1}],"meta":null}`},
		{"application/json", `{"amount":1E2,"currency":"EUR","items":[{"sku":"a","qty":1.000},{"sku":"b","qty":2}],"meta":null}`},
	}
	for _, v := range variants {
		assert.Equal(t, base, fp(v.ct, v.body), "%s %s", v.ct, v.body)
	}

	different := []struct{ ct, body string }{
		{"application/json", `{"amount":101,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`},
		{"application/json", `{"amount":100.5,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`},
		{"application/json", `{"amount":100,"currency":"EUR","items":[{"sku":"b","qty":2},{"sku":"a","qty":1}],"meta":null}`},
		// A repeated member is not canonicalised (the middleware refuses it).
		{"application/json", `{"amount":1,"amount":100,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`},
		{"application/json", `{"amount":100,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}]}`},
		{"text/plain", `{"amount":100,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`},
	}
	for _, v := range different {
		assert.NotEqual(t, base, fp(v.ct, v.body), "%s %s", v.ct, v.body)
	}

	// Integers a double cannot hold exactly keep every digit: they are
	// hashed as written, not folded into their neighbours.
	assert.NotEqual(t, fp("", `{"n":12345678901234567890}`), fp("", `{"n":12345678901234567891}`))
	assert.NotEqual(t, fp("", `{"n":9007199254740993}`), fp("", `{"n":9007199254740992}`))
	assert.Equal(t, fp("", `{"n":9007199254740992}`), fp("", `{ "n":9007199254740992.0 }`), "2^53 is a double")
	assert.NotEqual(t, fp("", `[1e400]`), fp("", `[1e401]`), "beyond a double's range: as written")
	// Invalid JSON is hashed raw, byte for byte.
	assert.NotEqual(t, fp("application/json", `{"a":1`), fp("application/json", `{"a": 1`))
	assert.NotEqual(t, fp("application/json", `{"a":1} x`), fp("application/json", `{"a":1}`))
}

// Decoding folds invalid UTF-8 and lone surrogate escapes into U+FFFD, so
// such bodies are hashed byte for byte: distinct payloads never share a
// fingerprint. A surrogate pair is a character like any other.
func TestFingerprintKeepsUndecodableBodiesApart(t *testing.T) {
	t.Parallel()
	fp := func(b string) string { return Fingerprint("POST", "/x", "", "", "application/json", []byte(b)) }
	assert.NotEqual(t, fp("{\"name\":\"\xff\"}"), fp("{\"name\":\"\xfe\"}"))
	assert.NotEqual(t, fp("{\"name\":\"\xff\"}"), fp(`{"name":"\ufffd"}`))
	assert.NotEqual(t, fp(`{"name":"\ud800"}`), fp(`{"name":"\ufffd"}`))
	assert.NotEqual(t, fp(`{"name":"\ud800"}`), fp(`{"name":"\udbff"}`))
	assert.NotEqual(t, fp(`{"name":"\udc00x"}`), fp(`{"name":"\ufffdx"}`))
	assert.NotEqual(t, fp(`{"name":"\ud83d\u0041"}`), fp(`{"name":"\ufffdA"}`))
	assert.Equal(t, fp(`{"x":"\ud83d\ude00","y":1}`), fp(`{ "y":1, "x":"😀" }`), "a surrogate pair canonicalises")
	assert.Equal(t, fp(`{"x":"\\ud800","y":1}`), fp(`{ "y":1, "x":"\\ud800" }`), "an escaped backslash is not an escape")

	for in, want := range map[string]bool{
		`"\ud800"`: true, `"\uDBFF\uDFFF"`: false, `"\udfff"`: true, `"\ud800\ud800"`: true,
		`"\\ud800"`: false, `"\\\ud800"`: true, `"\u00e9"`: false, `"\ud800`: true, `"\u12"`: false,
	} {
		assert.Equal(t, want, escapesLoneSurrogate([]byte(in)), in)
	}
}

func TestFingerprintFraming(t *testing.T) {
	t.Parallel()
	a := Fingerprint("POST", "ab", "", "c", "text/plain", []byte("d"))
	for _, other := range []string{
		Fingerprint("POST", "a", "", "bc", "text/plain", []byte("d")),
		Fingerprint("POST", "ab", "", "", "text/plain", []byte("cd")),
		Fingerprint("PATCH", "ab", "", "c", "text/plain", []byte("d")),
		Fingerprint("POST", "ab", "/x", "c", "text/plain", []byte("d")),
		Fingerprint("POST", "a", "b", "c", "text/plain", []byte("d")),
	} {
		assert.NotEqual(t, a, other)
	}
	assert.NotEqual(t, Fingerprint("POST", "r", "", "", "text/plain", []byte("1")), Fingerprint("POST", "r", "", "", "application/json", []byte("1")),
		"a canonical JSON body never collides with a raw one")
	assert.Len(t, a, 64)
	assert.NotEqual(t, storedKey("ab", "c"), storedKey("a", "bc"))
	assert.NotEqual(t, storedKey("", "k"), storedKey("k", ""))
}

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	got, err := canonicalJSON([]byte(" {\"b\" : [1 , 2.50, -0, 1e3], \"a\":\"\\u00e9\\n\\\"\\/<\\u001f\", \"c\":{\"z\":true,\"y\":false}} "))
	require.NoError(t, err)
	assert.Equal(t, `{"a":"é\n\"/<\u001f","b":[1,2.5,0,1000],"c":{"y":false,"z":true}}`, string(got))
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", ErrBodyInvalid}, {"{", ErrBodyInvalid}, {`{"a":1}{}`, ErrBodyInvalid}, {"nul", ErrBodyInvalid},
		{`{"a":1} x`, ErrBodyInvalid}, {"\"\xff\"", ErrBodyInvalid}, {`[1,]`, ErrBodyInvalid},
		{`{"a":1,"a":1}`, ErrBodyInvalid}, {`{"x":{"b":1,"b":2}}`, ErrBodyInvalid}, {`{"\u0061":1,"a":2}`, ErrBodyInvalid},
		{`"\ud800"`, errNotCanonical}, {`12345678901234567891`, errNotCanonical}, {`-1e400`, errNotCanonical},
		{strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2), ErrBodyInvalid}, // encoding/json's limit too
	} {
		_, err := canonicalJSON([]byte(tc.in))
		assert.ErrorIs(t, err, tc.want, "%.40q", tc.in)
	}
}

// The examples of RFC 8785: §3.2.2.3's numbers (Appendix B), and the
// canonical forms of §3.2.3 (key order by UTF-16 code units) and §3.2.4.
func TestCanonicalJSONRFC8785(t *testing.T) {
	t.Parallel()
	for bits, want := range map[uint64]string{
		0x0000000000000000: "0",
		0x8000000000000000: "0",
		0x0000000000000001: "5e-324",
		0x8000000000000001: "-5e-324",
		0x7fefffffffffffff: "1.7976931348623157e+308",
		0xffefffffffffffff: "-1.7976931348623157e+308",
		0x4340000000000000: "9007199254740992",
		0xc340000000000000: "-9007199254740992",
		0x4430000000000000: "295147905179352830000",
		0x44b52d02c7e14af5: "9.999999999999997e+22",
		0x44b52d02c7e14af6: "1e+23",
		0x44b52d02c7e14af7: "1.0000000000000001e+23",
		0x444b1ae4d6e2ef4e: "999999999999999700000",
		0x444b1ae4d6e2ef4f: "999999999999999900000",
		0x444b1ae4d6e2ef50: "1e+21",
		0x3eb0c6f7a0b5ed8c: "9.999999999999997e-7",
		0x3eb0c6f7a0b5ed8d: "0.000001",
		0x41b3de4355555553: "333333333.3333332",
		0x41b3de4355555554: "333333333.33333325",
		0x41b3de4355555555: "333333333.3333333",
		0x41b3de4355555556: "333333333.3333334",
		0x41b3de4355555557: "333333333.33333343",
		0xbecbf647612f3696: "-0.0000033333333333333333",
		0x43143ff3c1cb0959: "1424953923781206.2",
	} {
		f := math.Float64frombits(bits)
		assert.Equal(t, want, string(appendJCSNumber(nil, f)), "%#016x", bits)
		if f != 0 {
			// The text reads back as the same double.
			back, err := strconv.ParseFloat(want, 64)
			assert.NoError(t, err)
			assert.Equal(t, f, back, want)
		}
	}

	for _, tc := range []struct{ in, want string }{
		{ // §3.2.2: the sample
			`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
		},
		{ // §3.2.3: sorting by UTF-16 code units
			`{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}",
		},
	} {
		got, err := canonicalJSON([]byte(tc.in))
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(got))
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,false,null]}`, `[1.0, 2e10, -0.5]`, `"\u00e9\t"`, `{"a":{"a":{"a":{}}}}`, `{"a":1,"a":2}`, ` 12 `, `{"x":"\ud83d\ude00"}`, `{`, "\xff",
		`[333333333.33333329, 1E30, 4.50, 2e-3, 1e-7, 1e21, 123456789012345678901, 5e-324, 1e400]`, `{"\ufb33":1,"\ud83d\ude00":2}`, `"\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := canonicalJSON(in)
		switch {
		case errors.Is(err, errNotCanonical):
			if !json.Valid(in) {
				t.Fatalf("canonicalJSON(%q): invalid JSON reported as not canonical", in)
			}
			return
		case err != nil:
			if !errors.Is(err, ErrBodyInvalid) {
				t.Fatalf("canonicalJSON(%q): %v, not ErrBodyInvalid", in, err)
			}
			// JSON text is UTF-8 (RFC 8259 §8.1), which json.Valid does not
			// check.
			if json.Valid(in) && utf8.Valid(in) && !hasDuplicateMember(in) {
				t.Fatalf("canonicalJSON(%q) rejected valid JSON: %v", in, err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("canonicalJSON(%q) accepted invalid JSON", in)
		}
		if !json.Valid(c) {
			t.Fatalf("canonicalJSON(%q) = %q, not valid JSON", in, c)
		}
		again, err := canonicalJSON(c)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", in, c, again, err)
		}
		// Whitespace and indentation never change the canonical form.
		var indented bytes.Buffer
		if err := json.Indent(&indented, c, " ", "\t"); err != nil {
			t.Fatalf("indent %q: %v", c, err)
		}
		if ci, err := canonicalJSON(indented.Bytes()); err != nil || !bytes.Equal(ci, c) {
			t.Fatalf("indented %q canonicalises to %q, want %q (%v)", indented.Bytes(), ci, c, err)
		}
		// The canonical form decodes to the same value as the input, numbers
		// as doubles.
		var v1, v2 any
		if json.Unmarshal(in, &v1) != nil || json.Unmarshal(c, &v2) != nil {
			t.Fatalf("decode %q or %q failed", in, c)
		}
		if !reflect.DeepEqual(v1, v2) {
			t.Fatalf("value changed: %q -> %q", in, c)
		}
	})
}

// hasDuplicateMember reports whether the JSON text data has an object
// that repeats a member name (after unescaping).
func hasDuplicateMember(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		seen   map[string]bool
		object bool
		name   bool // the next string token is a member name
	}
	var stack []*frame
	for {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		top := func() *frame {
			if len(stack) == 0 {
				return nil
			}
			return stack[len(stack)-1]
		}()
		if top != nil && top.object && top.name {
			if d, ok := t.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if p := func() *frame {
					if len(stack) == 0 {
						return nil
					}
					return stack[len(stack)-1]
				}(); p != nil && p.object {
					p.name = true
				}
				continue
			}
			name := t.(string)
			if top.seen[name] {
				return true
			}
			top.seen[name] = true
			top.name = false
			continue
		}
		switch t {
		case json.Delim('{'):
			stack = append(stack, &frame{seen: map[string]bool{}, object: true, name: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if top := func() *frame {
			if len(stack) == 0 {
				return nil
			}
			return stack[len(stack)-1]
		}(); top != nil && top.object {
			top.name = true // a value ended: a name or '}' comes next
		}
	}
}
