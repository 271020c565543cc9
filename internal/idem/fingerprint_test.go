package idem

import (
	"bytes"
	"encoding/json"
	"testing"

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
		{"application/json", `{"amount":1,"amount":100,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`},
	}
	for _, v := range variants {
		assert.Equal(t, base, fp(v.ct, v.body), "%s %s", v.ct, v.body)
	}

	different := []struct{ ct, body string }{
		{"application/json", `{"amount":101,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`},
		{"application/json", `{"amount":100.0,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`},
		{"application/json", `{"amount":100,"currency":"EUR","items":[{"sku":"b","qty":2},{"sku":"a","qty":1}],"meta":null}`},
		{"application/json", `{"amount":100,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}]}`},
		{"text/plain", `{"amount":100,"currency":"EUR","items":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"meta":null}`},
	}
	for _, v := range different {
		assert.NotEqual(t, base, fp(v.ct, v.body), "%s %s", v.ct, v.body)
	}

	// Big integers keep every digit.
	assert.NotEqual(t, fp("", `{"n":12345678901234567890}`), fp("", `{"n":12345678901234567891}`))
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
	got, err := canonicalJSON([]byte(" {\"b\" : [1 , 2.50, -0, 1e3], \"a\":\"\\u00e9\\n\\\"\\/<\", \"c\":{\"z\":true,\"y\":false}} "))
	require.NoError(t, err)
	assert.Equal(t, `{"a":"é\u000a\"/<","b":[1,2.50,-0,1e3],"c":{"y":false,"z":true}}`, string(got))
	for _, bad := range []string{"", "{", `{"a":1}{}`, "nul", `"\ud800`} {
		_, err := canonicalJSON([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,false,null]}`, `[1.0, 2e10, -0.5]`, `"\u00e9\t"`, `{"a":{"a":{"a":{}}}}`, `{"a":1,"a":2}`, ` 12 `, `{"x":"\ud83d\ude00"}`, `{`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := canonicalJSON(in)
		if err != nil {
			if json.Valid(in) {
				t.Fatalf("canonicalJSON(%q) rejected valid JSON: %v", in, err)
			}
			return
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
		// The canonical form decodes to the same value as the input.
		var v1, v2 any
		d1 := json.NewDecoder(bytes.NewReader(in))
		d1.UseNumber()
		d2 := json.NewDecoder(bytes.NewReader(c))
		d2.UseNumber()
		if d1.Decode(&v1) != nil || d2.Decode(&v2) != nil {
			t.Fatalf("decode %q or %q failed", in, c)
		}
		b1, _ := json.Marshal(v1)
		b2, _ := json.Marshal(v2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("value changed: %q vs %q", b1, b2)
		}
	})
}
