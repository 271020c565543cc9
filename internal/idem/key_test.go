package idem

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseKey(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", MaxKeyLen)
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{in: "8e03978e-40d5-43e8-bc93-6894a57f9324", want: "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{in: `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, want: "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{in: "  abc\t", want: "abc"},
		{in: `"a b"`, want: "a b"},
		{in: `"say \"hi\" \\o/"`, want: `say "hi" \o/`},
		{in: "a+b/c=", wantErr: ErrKeyInvalid},
		{in: "urn:uuid:8e03978e/x_y.z~!#$%&'*^`|", want: "urn:uuid:8e03978e/x_y.z~!#$%&'*^`|"},
		{in: `"a2, b2"`, want: "a2, b2"},
		{in: long, want: long},
		{in: `"` + long + `"`, want: long},
		{in: `"` + strings.Repeat(`\\`, MaxKeyLen) + `"`, want: strings.Repeat(`\`, MaxKeyLen)},
		{in: "", wantErr: ErrKeyEmpty},
		{in: "   ", wantErr: ErrKeyEmpty},
		{in: `""`, wantErr: ErrKeyEmpty},
		{in: long + "a", wantErr: ErrKeyTooLong},
		{in: `"` + long + `a"`, wantErr: ErrKeyTooLong},
		{in: `"` + strings.Repeat(`\\`, MaxKeyLen+1) + `"`, wantErr: ErrKeyTooLong},
		{in: "ключ", wantErr: ErrKeyInvalid},
		{in: "a\x00b", wantErr: ErrKeyInvalid},
		{in: "a\x7fb", wantErr: ErrKeyInvalid},
		{in: `"abc`, wantErr: ErrKeyInvalid},
		{in: `"abc";p=1`, wantErr: ErrKeyInvalid},
		{in: `"a\nb"`, wantErr: ErrKeyInvalid},
		{in: `"a\b"`, wantErr: ErrKeyInvalid},
		{in: `"abc\"`, wantErr: ErrKeyInvalid},
		{in: "\"é\"", wantErr: ErrKeyInvalid},
		// Lists (two fields folded by a proxy), parameters and stray
		// delimiters are not one key.
		{in: "a2, b2", wantErr: ErrKeyInvalid},
		{in: "a2,b2", wantErr: ErrKeyInvalid},
		{in: `"a2", "b2"`, wantErr: ErrKeyInvalid},
		{in: `a2, "b2"`, wantErr: ErrKeyInvalid},
		{in: `"a2", b2`, wantErr: ErrKeyInvalid},
		{in: "a b", wantErr: ErrKeyInvalid},
		{in: "abc;p=1", wantErr: ErrKeyInvalid},
		{in: `x"y`, wantErr: ErrKeyInvalid},
		{in: "(a)", wantErr: ErrKeyInvalid},
	}
	for _, tt := range tests {
		got, err := ParseKey(tt.in)
		if tt.wantErr != nil {
			assert.ErrorIs(t, err, tt.wantErr, "ParseKey(%q)", tt.in)
			assert.Empty(t, got)
			continue
		}
		if assert.NoError(t, err, "ParseKey(%q)", tt.in) {
			assert.Equal(t, tt.want, got, "ParseKey(%q)", tt.in)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"abc", `"abc"`, `"a\"b"`, `"a\\b"`, `""`, `"`, "", " x ", `"x";y`, "\x00", "é", strings.Repeat("k", 256), "a2, b2", `"a", "b"`, "k;p=1", "urn:x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		key, err := ParseKey(in)
		if err != nil {
			if key != "" {
				t.Fatalf("ParseKey(%q) = %q with error %v", in, key, err)
			}
			return
		}
		if len(key) < 1 || len(key) > MaxKeyLen {
			t.Fatalf("ParseKey(%q) = %q: length %d out of 1..%d", in, key, len(key), MaxKeyLen)
		}
		for i := 0; i < len(key); i++ {
			if key[i] < 0x20 || key[i] > 0x7e {
				t.Fatalf("ParseKey(%q) = %q: byte %#x is not printable ASCII", in, key, key[i])
			}
		}
		// A bare key is the trimmed field value, of token characters only:
		// never a list, parameters or a quote.
		if v := strings.Trim(in, " \t"); v[0] != '"' {
			if key != v {
				t.Fatalf("ParseKey(%q) = %q, want the trimmed value", in, key)
			}
			if strings.ContainsAny(key, ",; \"()=") {
				t.Fatalf("ParseKey(%q) = %q: a delimiter in a bare key", in, key)
			}
		}
		// The sf-string serialisation of the key parses back to it.
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
		if back, err := ParseKey(quoted); err != nil || back != key {
			t.Fatalf("ParseKey(%q) = %q, %v; want %q", quoted, back, err, key)
		}
	})
}
